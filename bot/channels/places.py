"""A location shared in a chat (Telegram `message.location`, Zalo `user_send_location`) as
words the outage flow understands.

The nearest ward of `places.yml` within its radius becomes the button-style payload
`/report_outage{"location": "Phường Bến Thành, Quận 1"}`: the intent is certain (sharing a
location with a power company's bot is reporting where the power is out) and the `location`
entity fills `outage_location` whether or not the outage form is already asking. A location
near no known ward becomes a plain `/report_outage`, and the flow asks for the ward in words.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bot.config_files import read_yaml

PLACES_FILE = Path(__file__).with_name("places.yml")
EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class Ward:
    ward: str
    district: str
    province: str
    latitude: float
    longitude: float
    radius_km: float

    @property
    def name(self) -> str:
        return f"{self.ward}, {self.district}"


@lru_cache(maxsize=1)
def load_wards(path: Path = PLACES_FILE) -> tuple[Ward, ...]:
    doc = read_yaml(path)
    return tuple(Ward(**{k: entry[k] for k in Ward.__dataclass_fields__}) for entry in doc.get("wards") or [])


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def nearest_ward(latitude: float, longitude: float) -> Ward | None:
    """The closest known ward whose radius covers the point, or None."""
    best: tuple[float, Ward] | None = None
    for ward in load_wards():
        distance = distance_km(latitude, longitude, ward.latitude, ward.longitude)
        if distance <= ward.radius_km and (best is None or distance < best[0]):
            best = (distance, ward)
    return best[1] if best else None


def location_text(latitude: float, longitude: float) -> str:
    """What the agent is told when a customer shares this location."""
    ward = nearest_ward(latitude, longitude)
    if ward is None:
        return "/report_outage"
    return "/report_outage" + json.dumps({"location": ward.name}, ensure_ascii=False)


def coordinates(latitude: object, longitude: object) -> tuple[float, float] | None:
    """Both values as floats within the world's bounds (platforms send numbers or strings)."""
    try:
        lat, lon = float(latitude), float(longitude)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or math.isnan(lat) or math.isnan(lon):
        return None
    return lat, lon
