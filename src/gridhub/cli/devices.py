"""``gridhub mqtt credentials`` and ``gridhub certs dev`` (issue #6).

``mqtt credentials`` talks to a running hub (``--url``, ``--token``: the installation admin's):
it issues or rotates device passwords, printing each once, then writes the Mosquitto password and
ACL files of every stored credential into ``--out`` and prints how to make Mosquitto reload them.
The hub keeps only hashes, so the files can be written again at any time.
"""

from __future__ import annotations

import os
import secrets
import ssl
from pathlib import Path
from typing import Annotated

import typer

from gridhub.access.dev_certs import DEFAULT_HOSTS, make_dev_certs
from gridhub.cli.common import api_call, console, err_console
from gridhub.hub import Hub

mqtt_app = typer.Typer(help="MQTT broker credentials.", no_args_is_help=True)
certs_app = typer.Typer(help="TLS certificates.", no_args_is_help=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="GRIDHUB_URL", help="hub API base URL")]
TokenOpt = Annotated[
    str, typer.Option("--token", envvar="GRIDHUB_TOKEN", help="installation admin token")
]
CaOpt = Annotated[
    Path | None, typer.Option("--ca", help="CA file to trust for an https:// hub URL")
]

RELOAD_HELP = """\
Mosquitto re-reads password_file and acl_file on SIGHUP, without dropping connections:
  systemctl reload mosquitto        # Debian/Ubuntu service
  kill -HUP $(pidof mosquitto)      # any other
mosquitto.conf needs (once; Mosquitto 2.x):
  allow_anonymous false
  password_file {passwd}
  acl_file {acl}
  use_username_as_clientid true"""


def _split(device: str) -> tuple[str, str]:
    tenant, sep, hardware_id = device.partition("/")
    if not sep or not tenant or not hardware_id:
        raise typer.BadParameter(f"give devices as <tenant>/<hardwareId>, not {device!r}")
    return tenant, hardware_id


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


@mqtt_app.command("credentials")
def credentials(
    out: Annotated[Path, typer.Option(help="directory for mosquitto.passwd and mosquitto.acl")],
    issue: Annotated[
        list[str] | None, typer.Option(help="<tenant>/<hardwareId> to give a password (repeat)")
    ] = None,
    rotate: Annotated[
        list[str] | None, typer.Option(help="<tenant>/<hardwareId> to give a new password")
    ] = None,
    hub_user: Annotated[
        bool,
        typer.Option(
            "--hub-user", help="create or rotate the hub's two users (ingest, command publisher)"
        ),
    ] = False,
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
    ca: CaOpt = None,
) -> None:
    """Issue/rotate MQTT passwords (each shown once), write Mosquitto's files, say how to reload."""
    base = url.rstrip("/")
    verify: dict[str, object] = {}
    if ca is not None:
        verify["verify"] = ssl.create_default_context(cafile=str(ca))
    plans = [(d, False) for d in issue or []] + [(d, True) for d in rotate or []]
    for device, again in plans:
        tenant, hardware_id = _split(device)
        issued = api_call(
            "POST",
            f"{base}/api/v1/tenants/{tenant}/devices/{hardware_id}/mqtt-credentials",
            token,
            params={"rotate": str(again).lower()},
            **verify,
        )
        if "password" not in issued:
            err_console.print(f"[red]{device}:[/red] {issued}")
            raise typer.Exit(1)
        console.print(f"{issued['username']}  password (shown once): {issued['password']}")
    if hub_user:  # two users: the broker takes usernames as client ids
        for role, keys in (
            ("ingest", "mqtt_username / mqtt_password"),
            ("publisher", "mqtt_out_username / mqtt_out_password"),
        ):
            issued = api_call(
                "POST", f"{base}/api/v1/mqtt/hub-credential", token, params={"role": role}, **verify
            )
            console.print(
                f"hub {role} user {issued['username']}  password (shown once): "
                f"{issued['password']}\n  set {keys} to use it"
            )
    files = api_call("GET", f"{base}/api/v1/mqtt/auth-files", token, **verify)
    out.mkdir(parents=True, exist_ok=True)
    passwd, acl = out / "mosquitto.passwd", out / "mosquitto.acl"
    _write(passwd, files["password_file"])
    _write(acl, files["acl_file"])
    users = sum(1 for line in files["password_file"].splitlines() if line)
    console.print(f"wrote {passwd} and {acl} ({users} users)")
    console.print(RELOAD_HELP.format(passwd=passwd.resolve(), acl=acl.resolve()))


@certs_app.command("dev")
def dev(
    out: Annotated[Path, typer.Option(help="directory for ca.pem, server.pem and keys")] = Path(
        "gridhub-certs"
    ),
    host: Annotated[
        list[str] | None,
        typer.Option(help="name or address the server certificate is for (repeat)"),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=825)] = 365,
) -> None:
    """Make a local CA and a server certificate for trying HTTPS and MQTTS (not for production)."""
    try:
        made = make_dev_certs(out, tuple(host or DEFAULT_HOSTS), days=days)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"CA          {made.ca_cert}  (give this to clients; keep {made.ca_key} private)")
    console.print(f"certificate {made.cert}\nkey         {made.key}")
    console.print(
        f"try: gridhub serve --tls-cert {made.cert} --tls-key {made.key}\n"
        f"     curl --cacert {made.ca_cert} https://localhost:8480/health"
    )


def print_serve_extras(hub: Hub) -> None:
    """What ``serve`` started for devices: MQTTS, broker auth, meter ports."""
    broker = hub.broker
    if broker is not None and broker.tls_url is not None:
        console.print(f"MQTT over TLS  {broker.tls_url}")
    if broker is not None and hub.settings.mqtt_auth:
        console.print(
            f"MQTT auth  on: per-device passwords and ACLs in {hub.settings.mqtt_auth_dir}"
        )
    for reader in hub.meter_readers:
        cfg = reader.config
        console.print(f"meter port  {cfg.url}  ({cfg.protocol}) → tenant {cfg.tenant}")
