"""`weather`: current conditions and a daily forecast for a place name, from Open-Meteo (no key needed).

Two requests: the geocoding API turns the name into coordinates, the forecast API answers for them.
Weather codes arrive as WMO numbers and leave as words.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import httpx
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from backend.config import Settings
from backend.tools.base import Source, ToolResult
from backend.tools.internet.http_json import fetch_json
from backend.tools.internet.service_call import Budget, InternetTool, ServiceUnavailable

ModelT = TypeVar("ModelT", bound=BaseModel)

DESCRIPTION = (
    "Current weather and the daily forecast (up to 16 days) for a place name, from Open-Meteo. "
    "Add a region or country after a comma when the name is ambiguous, e.g. 'Portland, Oregon'."
)

CURRENT_VARIABLES = ("temperature_2m", "relative_humidity_2m", "weather_code", "wind_speed_10m")
DAILY_VARIABLES = (
    "weather_code",
    "temperature_2m_max",
    "temperature_2m_min",
    "precipitation_sum",
    "precipitation_probability_max",
)
CANDIDATES_WITH_QUALIFIER = 10
"""For "Paris, Texas" the geocoder is asked for several Parises and the qualifier picks one."""

WMO_WEATHER_CODES: dict[int, str] = {
    0: "clear sky",
    1: "mainly clear",
    2: "partly cloudy",
    3: "overcast",
    45: "fog",
    48: "depositing rime fog",
    51: "light drizzle",
    53: "moderate drizzle",
    55: "dense drizzle",
    56: "light freezing drizzle",
    57: "dense freezing drizzle",
    61: "slight rain",
    63: "moderate rain",
    65: "heavy rain",
    66: "light freezing rain",
    67: "heavy freezing rain",
    71: "slight snowfall",
    73: "moderate snowfall",
    75: "heavy snowfall",
    77: "snow grains",
    80: "slight rain showers",
    81: "moderate rain showers",
    82: "violent rain showers",
    85: "slight snow showers",
    86: "heavy snow showers",
    95: "thunderstorm",
    96: "thunderstorm with slight hail",
    99: "thunderstorm with heavy hail",
}
"""The WMO 4677 subset Open-Meteo documents for `weather_code`."""


def describe_weather_code(code: object) -> str:
    if isinstance(code, (int, float)) and int(code) == code and int(code) in WMO_WEATHER_CODES:
        return WMO_WEATHER_CODES[int(code)]
    return "unknown conditions" if code is None else f"weather code {code}"


class Place(BaseModel):
    """One geocoding result; Open-Meteo sends more fields (population, elevation…), ignored here."""

    name: str
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    country: str | None = None
    country_code: str | None = None
    admin1: str | None = None
    timezone: str | None = None

    @property
    def label(self) -> str:
        parts = [self.name] + [part for part in (self.admin1, self.country) if part and part != self.name]
        return ", ".join(parts)


class Geocoding(BaseModel):
    results: list[Place] = Field(default_factory=list)
    """Open-Meteo leaves the key out altogether when nothing matches."""


class Forecast(BaseModel):
    timezone: str | None = None
    current: dict[str, Any]
    current_units: dict[str, str] = Field(default_factory=dict)
    daily: dict[str, list[Any]]
    daily_units: dict[str, str] = Field(default_factory=dict)


class WeatherArgs(BaseModel):
    location: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)] = Field(
        description="A place name, optionally with region or country: 'Lyon', 'Paris, Texas', 'Perth, Australia'."
    )
    days: int = Field(default=3, ge=1, le=16, description="Days of forecast, today included, 1 to 16.")


def _split_location(location: str) -> tuple[str, list[str]]:
    """'Paris, Texas' -> ('Paris', ['texas']): the geocoder matches names only, not "name, region"."""
    name, *qualifiers = [part.strip() for part in location.split(",")]
    return name, [q.lower() for q in qualifiers if q]


def _best_place(places: list[Place], qualifiers: list[str]) -> Place | None:
    """Pick the candidate matching most qualifiers; the geocoder's own order (relevance) breaks ties."""
    if not places:
        return None
    return max(places, key=lambda place: sum(_matches(place, q) for q in qualifiers))


def _matches(place: Place, qualifier: str) -> bool:
    """Exact region, country or country code; or, for longer words, part of the region or country name."""
    values = [value.lower() for value in (place.admin1, place.country, place.country_code) if value]
    return any(qualifier == value or (len(qualifier) > 3 and qualifier in value) for value in values)


class WeatherTool(InternetTool[WeatherArgs]):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "weather", DESCRIPTION, WeatherArgs)

    async def ask(self, request: WeatherArgs, budget: Budget) -> ToolResult:
        """Geocoding, then the forecast: both requests share the one budget."""
        name, qualifiers = _split_location(request.location)
        if not name:
            return ToolResult.failure("The location is empty; give a place name such as 'Berlin'.")
        geocoding = await fetch_json(
            self._settings.open_meteo_geocoding_url,
            {"name": name, "count": CANDIDATES_WITH_QUALIFIER if qualifiers else 1, "language": "en", "format": "json"},
            service="Open-Meteo geocoding",
            budget=budget,
        )
        places = _parse(Geocoding, geocoding, "Open-Meteo geocoding").results
        place = _best_place(places, qualifiers)
        if place is None:
            return ToolResult(
                ok=False,
                text=f'Unknown place: Open-Meteo found no place called "{request.location}". '
                "Check the spelling or try a nearby larger town.",
                data={"location": request.location, "place": None},
            )
        params: dict[str, str | int | float] = {
            "latitude": place.latitude,
            "longitude": place.longitude,
            "current": ",".join(CURRENT_VARIABLES),
            "daily": ",".join(DAILY_VARIABLES),
            "timezone": "auto",
            "forecast_days": request.days,
        }
        payload = await fetch_json(
            self._settings.open_meteo_forecast_url,
            params,
            service="Open-Meteo forecast",
            budget=budget,
        )
        forecast = _parse(Forecast, payload, "Open-Meteo forecast")
        url = str(httpx.URL(self._settings.open_meteo_forecast_url, params=params))
        return _result(place, forecast, url)


def _parse(model: type[ModelT], payload: Any, service: str) -> ModelT:
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        where = ".".join(str(part) for part in error.errors()[0]["loc"]) or "top level"
        raise ServiceUnavailable(f"{service} sent an answer in an unexpected shape (at {where})") from error


def _value(value: Any, unit: str | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        value = round(value, 1)
    if not unit:
        return str(value)
    return f"{value}%" if unit == "%" else f"{value} {unit}"


def _daily_rows(forecast: Forecast) -> list[dict[str, Any]]:
    """Open-Meteo sends columns (`time`, `temperature_2m_max`…); rows are what the text and the UI want."""
    dates = forecast.daily.get("time", [])
    rows = []
    for index, date in enumerate(dates):
        row: dict[str, Any] = {"date": date}
        for variable in DAILY_VARIABLES:
            column = forecast.daily.get(variable, [])
            row[variable] = column[index] if index < len(column) else None
        row["conditions"] = describe_weather_code(row["weather_code"])
        rows.append(row)
    return rows


def _result(place: Place, forecast: Forecast, url: str) -> ToolResult:
    now, units, daily_units = forecast.current, forecast.current_units, forecast.daily_units
    rows = _daily_rows(forecast)
    timezone = forecast.timezone or place.timezone or "local time"
    lines = [
        f"Weather for {place.label} ({place.latitude:.2f}, {place.longitude:.2f}), times in {timezone}:",
        f"Now ({now.get('time', 'current')}): {describe_weather_code(now.get('weather_code'))}, "
        f"{_value(now.get('temperature_2m'), units.get('temperature_2m'))}, "
        f"wind {_value(now.get('wind_speed_10m'), units.get('wind_speed_10m'))}, "
        f"humidity {_value(now.get('relative_humidity_2m'), units.get('relative_humidity_2m'))}.",
    ]
    if rows:
        lines.append(f"Next {len(rows)} day{'s' if len(rows) != 1 else ''}:")
    for row in rows:
        low = _value(row["temperature_2m_min"], daily_units.get("temperature_2m_min"))
        high = _value(row["temperature_2m_max"], daily_units.get("temperature_2m_max"))
        rain = _value(row["precipitation_sum"], daily_units.get("precipitation_sum"))
        chance = row["precipitation_probability_max"]
        chance_text = f", {chance}% chance" if chance is not None else ""
        lines.append(f"- {row['date']}: {row['conditions']}, {low} to {high}, precipitation {rain}{chance_text}")
    current = {**now, "conditions": describe_weather_code(now.get("weather_code"))}
    data = {
        "place": place.model_dump(),
        "timezone": timezone,
        "current": current,
        "current_units": units,
        "daily": rows,
        "daily_units": daily_units,
    }
    source = Source(title=f"Open-Meteo forecast for {place.label}", url=url, snippet=lines[1])
    return ToolResult(ok=True, text="\n".join(lines), data=data, sources=[source])
