"""Write the Green Button sample files of this folder (see README.md): ``python make_samples.py``.

The files follow the entry layout of the Green Button Alliance sample data (UsagePoint,
LocalTimeParameters, MeterReading, ReadingType, one IntervalBlock per local day, usage summary);
the readings are made up here, deterministically, so the files can be rebuilt byte for byte.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).parent
RESOURCE = "/espi/1_1/resource"
STAMP = "2013-07-01T00:00:00Z"

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="GreenButtonDataStyleSheet.xslt"?>
<!-- {note} -->
<feed xmlns="http://www.w3.org/2005/Atom">
\t<id>urn:uuid:{feed_id}</id>
\t<title>Green Button Subscription Feed</title>
\t<updated>{stamp}</updated>
\t<link rel="self" href="{resource}/Subscription/{subscription}"/>
"""


def entry(uuid: str, links: list[tuple[str, str]], title: str, content: str) -> str:
    link_lines = "".join(
        f'\t\t<link rel="{rel}" href="{RESOURCE}/{href}"/>\n' for rel, href in links
    )
    return (
        f"\t<entry>\n\t\t<id>urn:uuid:{uuid}</id>\n{link_lines}\t\t<title>{title}</title>\n"
        f"\t\t<content>\n{content}\t\t</content>\n"
        f"\t\t<published>{STAMP}</published>\n\t\t<updated>{STAMP}</updated>\n\t</entry>\n"
    )


def usage_point(uuid: str, base: str, title: str) -> str:
    links = [("self", base), ("up", base.rsplit("/", 1)[0])]
    links += [("related", f"{base}/MeterReading")] + [("related", "LocalTimeParameters/01")]
    content = (
        '\t\t\t<UsagePoint xmlns="http://naesb.org/espi">\n'
        "\t\t\t\t<ServiceCategory>\n\t\t\t\t\t<kind>0</kind>\n\t\t\t\t</ServiceCategory>\n"
        "\t\t\t</UsagePoint>\n"
    )
    return entry(uuid, links, title, content)


def local_time(uuid: str, title: str, tz_offset: int) -> str:
    content = (
        '\t\t\t<LocalTimeParameters xmlns="http://naesb.org/espi">\n'
        "\t\t\t\t<dstEndRule>B40E2000</dstEndRule>\n\t\t\t\t<dstOffset>3600</dstOffset>\n"
        "\t\t\t\t<dstStartRule>360E2000</dstStartRule>\n"
        f"\t\t\t\t<tzOffset>{tz_offset}</tzOffset>\n\t\t\t</LocalTimeParameters>\n"
    )
    links = [("self", "LocalTimeParameters/01"), ("up", "LocalTimeParameters")]
    return entry(uuid, links, title, content)


def meter_reading(uuid: str, base: str, number: str, reading_type: str, title: str) -> str:
    links = [
        ("self", f"{base}/MeterReading/{number}"),
        ("up", f"{base}/MeterReading"),
        ("related", f"{base}/MeterReading/{number}/IntervalBlock"),
        ("related", f"ReadingType/{reading_type}"),
    ]
    return entry(uuid, links, title, '\t\t\t<MeterReading xmlns="http://naesb.org/espi"/>\n')


def reading_type(uuid: str, number: str, flow: int, length: int, multiplier: int) -> str:
    fields = [
        ("accumulationBehaviour", 4),
        ("commodity", 1),
        ("currency", 840),
        ("dataQualifier", 12),
        ("flowDirection", flow),
        ("intervalLength", length),
        ("kind", 12),
        ("phase", 769),
        ("powerOfTenMultiplier", multiplier),
        ("timeAttribute", 0),
        ("uom", 72),
    ]
    body = "".join(f"\t\t\t\t<{name}>{value}</{name}>\n" for name, value in fields)
    content = f'\t\t\t<ReadingType xmlns="http://naesb.org/espi">\n{body}\t\t\t</ReadingType>\n'
    links = [("self", f"ReadingType/{number}"), ("up", "ReadingType")]
    return entry(uuid, links, "Type of Meter Reading Data", content)


def interval_block(
    uuid: str,
    base: str,
    number: str,
    block: int,
    readings: list[tuple[datetime, int, int, int, int | None]],
) -> str:
    """``readings``: (local start, epoch start, duration, value, quality or None)."""
    first, last = readings[0], readings[-1]
    total = last[1] + last[2] - first[1]
    lines = [
        '\t\t\t<IntervalBlock xmlns="http://naesb.org/espi">\n',
        f"\t\t\t\t<interval>\n\t\t\t\t\t<duration>{total}</duration>\n"
        f"\t\t\t\t\t<start>{first[1]}</start>\n"
        f"\t\t\t\t\t<!-- start date: {first[0]:%m/%d/%Y %I:%M:%S %p} -->\n\t\t\t\t</interval>\n",
    ]
    for local, start, duration, value, quality in readings:
        cost = round(value * 12.96) if value >= 0 else 0  # 12.96 ¢/kWh, in 1e-5 USD per Wh
        quality_xml = (
            f"\t\t\t\t\t<ReadingQuality>\n\t\t\t\t\t\t<quality>{quality}</quality>\n"
            "\t\t\t\t\t</ReadingQuality>\n"
            if quality is not None
            else ""
        )
        lines.append(
            f"\t\t\t\t<IntervalReading>\n\t\t\t\t\t<cost>{cost}</cost>\n{quality_xml}"
            f"\t\t\t\t\t<timePeriod>\n\t\t\t\t\t\t<duration>{duration}</duration>\n"
            f"\t\t\t\t\t\t<start>{start}</start>\n"
            f"\t\t\t\t\t\t<!-- {local:%m/%d/%Y %I:%M:%S %p} -->\n\t\t\t\t\t</timePeriod>\n"
            f"\t\t\t\t\t<value>{value}</value>\n\t\t\t\t</IntervalReading>\n"
        )
    lines.append("\t\t\t</IntervalBlock>\n")
    block_path = f"{base}/MeterReading/{number}/IntervalBlock"
    links = [("self", f"{block_path}/{block}"), ("up", block_path)]
    return entry(uuid, links, "", "".join(lines))


def summary(uuid: str, base: str, start: int, duration: int, total_wh: int, end: int) -> str:
    content = (
        '\t\t\t<ElectricPowerUsageSummary xmlns="http://naesb.org/espi">\n'
        f"\t\t\t\t<billingPeriod>\n\t\t\t\t\t<duration>{duration}</duration>\n"
        f"\t\t\t\t\t<start>{start}</start>\n\t\t\t\t</billingPeriod>\n"
        "\t\t\t\t<currency>840</currency>\n"
        "\t\t\t\t<currentBillingPeriodOverAllConsumption>\n"
        "\t\t\t\t\t<powerOfTenMultiplier>0</powerOfTenMultiplier>\n"
        f"\t\t\t\t\t<timeStamp>{end}</timeStamp>\n\t\t\t\t\t<uom>72</uom>\n"
        f"\t\t\t\t\t<value>{total_wh}</value>\n"
        "\t\t\t\t</currentBillingPeriodOverAllConsumption>\n"
        "\t\t\t\t<qualityOfReading>14</qualityOfReading>\n"
        f"\t\t\t\t<statusTimeStamp>{end}</statusTimeStamp>\n"
        "\t\t\t</ElectricPowerUsageSummary>\n"
    )
    links = [
        ("self", f"{base}/ElectricPowerUsageSummary/01"),
        ("up", f"{base}/ElectricPowerUsageSummary"),
    ]
    return entry(uuid, links, "Usage Summary", content)


def uuid_of(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032X}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def local_intervals(day: date, zone: ZoneInfo, seconds: int) -> list[tuple[datetime, int]]:
    """(local start, epoch start) of the intervals of a local day (92 quarters in spring DST)."""
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    first, stop = int(start.timestamp()), int(end.timestamp())
    return [(datetime.fromtimestamp(t, zone), t) for t in range(first, stop, seconds)]


def household_wh(hour: float, rng: random.Random) -> float:
    """Energy of a quarter-hour (Wh) of a US single-family home in March: base, morning, evening."""
    morning = 260 * math.exp(-(((hour - 7.5) / 1.2) ** 2))
    evening = 420 * math.exp(-(((hour - 19.0) / 2.2) ** 2))
    return (90 + morning + evening) * rng.uniform(0.8, 1.25)


def fifteen_minute() -> str:
    rng = random.Random(2012)
    zone = ZoneInfo("America/New_York")
    base = "RetailCustomer/4F1A2B3C/UsagePoint/7A3D91E2"
    parts = [
        HEAD.format(
            note="Hand-written sample in the Green Button (ESPI) format: see README.md",
            feed_id=uuid_of(rng),
            stamp=STAMP,
            resource=RESOURCE,
            subscription="5B0C3D2E",
        ),
        usage_point(uuid_of(rng), base, "Front Electric Meter"),
        local_time(uuid_of(rng), "DST For North America", -18000),
        meter_reading(uuid_of(rng), base, "01", "07", "Fifteen Minute Electricity Consumption"),
        reading_type(uuid_of(rng), "07", flow=1, length=900, multiplier=0),
    ]
    total, first = 0, None
    for block, day in enumerate([date(2012, 3, 10), date(2012, 3, 11), date(2012, 3, 12)], 1):
        readings = []
        for local, start in local_intervals(day, zone, 900):
            value = round(household_wh(local.hour + local.minute / 60, rng))
            quality = 8 if (block, local.hour, local.minute) in {(1, 5, 0), (3, 14, 30)} else None
            readings.append((local, start, 900, value, quality))
            total += value
        first = first or readings[0][1]
        parts.append(interval_block(uuid_of(rng), base, "01", 170 + block, readings))
    end = readings[-1][1] + 900
    parts.append(summary(uuid_of(rng), base, first, end - first, total, end))
    return "".join(parts) + "</feed>\n"


def pv_wh(hour: float) -> float:
    """Energy (Wh) a 5 kWp rooftop array makes in an hour of a clear California June day."""
    return max(0.0, 4300 * math.sin(math.pi * (hour - 5.5) / 14.5)) if 5.5 < hour < 20 else 0.0


def hourly_net_metering() -> str:
    rng = random.Random(2013)
    zone = ZoneInfo("America/Los_Angeles")
    base = "RetailCustomer/8C2E6A10/UsagePoint/31D7C5B9"
    parts = [
        HEAD.format(
            note="Hand-written sample in the Green Button (ESPI) format: see README.md",
            feed_id=uuid_of(rng),
            stamp=STAMP,
            resource=RESOURCE,
            subscription="9E4F1A07",
        ),
        usage_point(uuid_of(rng), base, "Home with rooftop solar"),
        local_time(uuid_of(rng), "DST For North America", -28800),
        meter_reading(uuid_of(rng), base, "01", "11", "Hourly Electricity Delivered"),
        reading_type(uuid_of(rng), "11", flow=1, length=3600, multiplier=-3),
        meter_reading(uuid_of(rng), base, "02", "12", "Hourly Electricity Received"),
        reading_type(uuid_of(rng), "12", flow=19, length=3600, multiplier=-3),
    ]
    days = [date(2013, 6, 21), date(2013, 6, 22)]
    delivered: list[list[tuple[datetime, int, int, int, int | None]]] = []
    received: list[list[tuple[datetime, int, int, int, int | None]]] = []
    for day in days:
        out, back = [], []
        for local, start in local_intervals(day, zone, 3600):
            load = 4 * household_wh(local.hour + 0.5, rng) * 0.8
            pv = pv_wh(local.hour + 0.5) * rng.uniform(0.9, 1.0)
            # the meter's two registers over the hour, in mWh (powerOfTenMultiplier -3)
            out.append((local, start, 3600, round(max(load - pv, 0) * 1000), None))
            back.append((local, start, 3600, round(max(pv - load, 0) * 1000), None))
        delivered.append(out)
        received.append(back)
    for number, blocks in (("01", delivered), ("02", received)):
        for block, readings in enumerate(blocks, 1):
            parts.append(interval_block(uuid_of(rng), base, number, block, readings))
    return "".join(parts) + "</feed>\n"


if __name__ == "__main__":
    (HERE / "fifteen_minute_electricity.xml").write_text(fifteen_minute(), encoding="utf-8")
    (HERE / "hourly_net_metering.xml").write_text(hourly_net_metering(), encoding="utf-8")
