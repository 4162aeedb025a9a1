"""The identifier registry: seed 002 Table 2, expanded, plus a tenant's own."""

from __future__ import annotations

import pytest

from gridhub.domain.identifiers import BUILTIN_IDENTIFIERS, IdentifierRegistry, validate_custom
from gridhub.errors import Conflict, InvalidRequest


def test_table_2_expanded() -> None:
    names = set(BUILTIN_IDENTIFIERS)
    # 10 families with l1|l2|l3 and total, 6 with l1|l2|l3 only, 22 single identifiers
    assert len(names) == 10 * 4 + 7 * 3 + 21
    for phase in ("l1", "l2", "l3", "total"):
        assert f"electricity.power.active.consumed.{phase}" in names
    assert "electricity.voltage.rms.l2" in names
    assert "electricity.voltage.rms.total" not in names
    assert BUILTIN_IDENTIFIERS["electricity.energy.active.consumed.total"].unit == "kWh"
    assert BUILTIN_IDENTIFIERS["electricity.power.reactive.injected.l3"].unit == "kVAR"
    assert BUILTIN_IDENTIFIERS["electricity.frequency"].unit == "HZ"
    assert BUILTIN_IDENTIFIERS["heating.pump.status"].unit == "#"
    assert BUILTIN_IDENTIFIERS["water.pressure"].unit == "bar"
    assert BUILTIN_IDENTIFIERS["gas.temperature"].unit == "°C"


def test_tenant_identifiers() -> None:
    registry = IdentifierRegistry()
    assert "boiler.stateOfCharge" not in registry
    registry.add(validate_custom("boiler.stateOfCharge", "%"))
    assert registry.get("boiler.stateOfCharge").unit == "%"  # type: ignore[union-attr]
    registry.add(validate_custom("boiler.stateOfCharge", "%"))  # same unit: fine
    with pytest.raises(Conflict):
        registry.add(validate_custom("boiler.stateOfCharge", "kWh"))
    with pytest.raises(Conflict):
        validate_custom("electricity.frequency", "Hz")
    for bad in ("nodots", "1.starts.with.digit", "has space.x", "x." + "y" * 200):
        with pytest.raises(InvalidRequest):
            validate_custom(bad, "u")
