"""weather against loopback Open-Meteo geocoding and forecast servers speaking their documented JSON."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.auth.models import User
from backend.config import Settings, load_settings
from backend.tools.base import Tool, ToolContext, ToolResult
from backend.tools.catalog import build_tool_registry
from backend.tools.internet.weather import WeatherArgs, WeatherTool, describe_weather_code
from tests.fakes.internet_services import (
    BERLIN,
    GARBAGE,
    PARIS_FRANCE,
    PARIS_TEXAS,
    SERVER_ERROR,
    LoopbackServer,
    Reply,
    Responder,
    forecast_responder,
    geocoding_responder,
    refused_url,
    silent_for,
)

PLACES = [BERLIN, PARIS_FRANCE, PARIS_TEXAS]


@dataclass
class OpenMeteo:
    geocoding: LoopbackServer
    forecast: LoopbackServer

    def settings(self, tmp_path: Path, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path,
            "open_meteo_geocoding_url": self.geocoding.base_url + "/v1/search",
            "open_meteo_forecast_url": self.forecast.base_url + "/v1/forecast",
            "internet_tools_timeout_s": 5.0,
        }
        values.update(overrides)
        return load_settings(**values)


@contextmanager
def open_meteo(geocoding: Responder | None = None, forecast: Responder | None = None) -> Iterator[OpenMeteo]:
    with (
        LoopbackServer(geocoding or geocoding_responder(PLACES)) as geocoding_server,
        LoopbackServer(forecast or forecast_responder()) as forecast_server,
    ):
        yield OpenMeteo(geocoding_server, forecast_server)


async def weather(settings: Settings, location: str, days: int = 3) -> ToolResult:
    context = ToolContext(user=User("alice"), settings=settings)
    return await WeatherTool(settings).run(WeatherArgs(location=location, days=days), context)


def test_weather_implements_the_tool_protocol(tmp_path: Path) -> None:
    tool = WeatherTool(load_settings(data_dir=tmp_path))
    assert isinstance(tool, Tool)
    assert tool.availability().available
    assert tool.args_model.model_json_schema()["properties"]["days"]["maximum"] == 16


async def test_current_conditions_and_daily_forecast_are_described_in_words(tmp_path: Path) -> None:
    with open_meteo() as services:
        result = await weather(services.settings(tmp_path), "Berlin", days=3)

    assert result.ok, result.text
    assert result.text == (
        "Weather for Berlin, Land Berlin, Germany (52.52, 13.41), times in Europe/Berlin:\n"
        "Now (2026-11-01T12:00): overcast, 12.3 °C, wind 11.2 km/h, humidity 81%.\n"
        "Next 3 days:\n"
        "- 2026-11-01: slight rain, 5.0 °C to 13.0 °C, precipitation 4.2 mm, 80% chance\n"
        "- 2026-11-02: clear sky, 5.2 °C to 13.5 °C, precipitation 0.0 mm, 5% chance\n"
        "- 2026-11-03: thunderstorm, 5.5 °C to 14.0 °C, precipitation 12.5 mm, 95% chance"
    )
    assert result.data["place"]["country"] == "Germany"
    assert result.data["current"]["conditions"] == "overcast"
    assert [row["conditions"] for row in result.data["daily"]] == ["slight rain", "clear sky", "thunderstorm"]
    assert result.data["daily"][2]["temperature_2m_max"] == 14.0


async def test_the_source_is_the_forecast_request_that_was_made(tmp_path: Path) -> None:
    with open_meteo() as services:
        result = await weather(services.settings(tmp_path), "Berlin", days=2)

    [source] = result.sources
    assert source.title == "Open-Meteo forecast for Berlin, Land Berlin, Germany"
    assert source.url is not None and source.url.startswith(
        services.forecast.base_url + "/v1/forecast?latitude=52.52437"
    )
    assert source.snippet == "Now (2026-11-01T12:00): overcast, 12.3 °C, wind 11.2 km/h, humidity 81%."


async def test_requests_follow_the_documented_geocoding_and_forecast_parameters(tmp_path: Path) -> None:
    with open_meteo() as services:
        await weather(services.settings(tmp_path), "Berlin", days=5)

    [geocode] = services.geocoding.requests
    assert (geocode.method, geocode.path) == ("GET", "/v1/search")
    assert geocode.query == {"name": "Berlin", "count": "1", "language": "en", "format": "json"}
    [forecast] = services.forecast.requests
    assert (forecast.method, forecast.path) == ("GET", "/v1/forecast")
    assert forecast.query == {
        "latitude": "52.52437",
        "longitude": "13.41053",
        "current": "temperature_2m,relative_humidity_2m,weather_code,wind_speed_10m",
        "daily": "weather_code,temperature_2m_max,temperature_2m_min,precipitation_sum,precipitation_probability_max",
        "timezone": "auto",
        "forecast_days": "5",
    }


async def test_a_region_after_a_comma_picks_the_matching_place(tmp_path: Path) -> None:
    with open_meteo(forecast=forecast_responder(timezone="America/Chicago")) as services:
        result = await weather(services.settings(tmp_path), "Paris, Texas", days=1)

    assert result.ok
    assert result.text.startswith("Weather for Paris, Texas, United States (33.66, -95.56), times in America/Chicago:")
    assert services.geocoding.requests[0].query["name"] == "Paris"
    assert services.geocoding.requests[0].query["count"] == "10"
    assert services.forecast.requests[0].query["latitude"] == "33.66094"


async def test_without_a_matching_region_the_geocoders_first_choice_is_used(tmp_path: Path) -> None:
    with open_meteo() as services:
        result = await weather(services.settings(tmp_path), "Paris, Narnia", days=1)

    assert result.ok
    assert result.data["place"]["country"] == "France"


async def test_an_unknown_place_is_a_failed_result_saying_so(tmp_path: Path) -> None:
    with open_meteo() as services:
        result = await weather(services.settings(tmp_path), "Atlantis", days=1)

    assert not result.ok
    assert result.text == (
        'Unknown place: Open-Meteo found no place called "Atlantis". Check the spelling or try a nearby larger town.'
    )
    assert services.forecast.requests == []


async def test_sixteen_days_are_the_most_and_all_are_listed(tmp_path: Path) -> None:
    with open_meteo() as services:
        result = await weather(services.settings(tmp_path), "Berlin", days=16)

    assert result.ok
    assert len(result.data["daily"]) == 16
    assert "Next 16 days:" in result.text
    assert result.data["daily"][-1]["date"] == "2026-11-16"


async def test_missing_values_are_shown_as_not_available(tmp_path: Path) -> None:
    nulls = forecast_responder(null_daily=("precipitation_sum", "precipitation_probability_max", "weather_code"))
    with open_meteo(forecast=nulls) as services:
        result = await weather(services.settings(tmp_path), "Berlin", days=1)

    assert result.ok
    assert result.text.splitlines()[-1] == "- 2026-11-01: unknown conditions, 5.0 °C to 13.0 °C, precipitation n/a"


async def test_an_open_meteo_error_reason_is_passed_on(tmp_path: Path) -> None:
    rejecting = Reply.json({"error": True, "reason": "Latitude must be in range of -90 to 90°. Given: 91.0."}, 400)
    with open_meteo(forecast=lambda request: rejecting) as services:
        result = await weather(services.settings(tmp_path), "Berlin")

    assert not result.ok
    assert result.text == (
        "unavailable: Open-Meteo forecast answered HTTP 400: Latitude must be in range of -90 to 90°. Given: 91.0."
    )


@pytest.mark.parametrize(
    ("broken", "reply", "reason"),
    [
        ("geocoding", SERVER_ERROR, "Open-Meteo geocoding answered HTTP 500: internal"),
        ("geocoding", GARBAGE, "Open-Meteo geocoding sent a response that is not valid JSON"),
        (
            "geocoding",
            Reply.json({"results": [{"name": "Berlin", "latitude": "north"}]}),
            "Open-Meteo geocoding sent an answer in an unexpected shape (at results.0.latitude)",
        ),
        ("forecast", SERVER_ERROR, "Open-Meteo forecast answered HTTP 500: internal"),
        ("forecast", GARBAGE, "Open-Meteo forecast sent a response that is not valid JSON"),
        (
            "forecast",
            Reply.json({"latitude": 52.5, "longitude": 13.4, "daily": {"time": []}}),
            "Open-Meteo forecast sent an answer in an unexpected shape (at current)",
        ),
    ],
)
async def test_open_meteo_misbehaving_is_reported_as_unavailable(
    tmp_path: Path, broken: str, reply: Reply, reason: str
) -> None:
    replies: dict[str, Responder] = {broken: lambda request: reply}
    with open_meteo(**replies) as services:
        result = await weather(services.settings(tmp_path), "Berlin")

    assert not result.ok
    assert result.text == f"unavailable: {reason}"


async def test_open_meteo_unreachable_is_reported_as_unavailable(tmp_path: Path) -> None:
    with refused_url("/v1/search") as geocoding_url:
        settings = load_settings(data_dir=tmp_path, open_meteo_geocoding_url=geocoding_url)
        result = await weather(settings, "Berlin")

    address = geocoding_url.removeprefix("http://").removesuffix("/v1/search")
    assert not result.ok
    assert result.text == f"unavailable: cannot connect to Open-Meteo geocoding at {address}"


async def test_a_forecast_that_never_comes_times_out_within_the_budget(tmp_path: Path) -> None:
    with open_meteo(forecast=silent_for(30)) as services:
        started = time.monotonic()
        result = await weather(services.settings(tmp_path, internet_tools_timeout_s=0.5), "Berlin")
        elapsed = time.monotonic() - started

    assert result.text == "unavailable: Open-Meteo forecast did not answer within 0.5 s"
    assert elapsed < 5


async def test_geocoding_and_forecast_share_one_time_budget(tmp_path: Path) -> None:
    """Each answer alone fits the budget; together they do not, and the call still ends on time."""
    slow_geocoding = geocoding_responder(PLACES)
    slow_forecast = forecast_responder()
    with open_meteo(
        # A second of slack on the first answer, so a loaded machine still reaches the forecast.
        geocoding=lambda request: replace(slow_geocoding(request), delay_s=1.5),
        forecast=lambda request: replace(slow_forecast(request), delay_s=1.5),
    ) as services:
        result = await weather(services.settings(tmp_path, internet_tools_timeout_s=2.5), "Berlin")

    assert len(services.forecast.requests) == 1
    assert result.text == "unavailable: Open-Meteo forecast did not answer within 2.5 s"


async def test_availability_reports_the_last_failure_until_a_call_succeeds(tmp_path: Path) -> None:
    with open_meteo(geocoding=lambda request: SERVER_ERROR) as services:
        settings = services.settings(tmp_path)
        tool = WeatherTool(settings)
        context = ToolContext(user=User("alice"), settings=settings)
        await tool.run(WeatherArgs(location="Berlin"), context)
        assert tool.availability().available
        assert tool.availability().reason == "last call failed: Open-Meteo geocoding answered HTTP 500: internal"

        services.geocoding.responder = geocoding_responder(PLACES)
        assert (await tool.run(WeatherArgs(location="Berlin"), context)).ok
        assert tool.availability().reason == ""


async def test_weather_is_registered_and_runs_through_the_registry(tmp_path: Path) -> None:
    with open_meteo() as services:
        settings = services.settings(tmp_path)
        registry = build_tool_registry(settings)
        result = await registry.invoke("weather", {"location": "Berlin", "days": 2}, ToolContext(User("bob"), settings))

    assert registry.availability("weather").available
    assert result.ok
    assert [row["date"] for row in result.data["daily"]] == ["2026-11-01", "2026-11-02"]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (0, "clear sky"),
        (3, "overcast"),
        (45, "fog"),
        (61, "slight rain"),
        (75, "heavy snowfall"),
        (82, "violent rain showers"),
        (99, "thunderstorm with heavy hail"),
        (3.0, "overcast"),
        (42, "weather code 42"),
        (None, "unknown conditions"),
    ],
)
def test_wmo_weather_codes_are_turned_into_words(code: object, words: str) -> None:
    assert describe_weather_code(code) == words


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"location": ""}, "location"),
        ({"location": "   "}, "location"),
        ({"location": "x" * 121}, "location"),
        ({"location": "Berlin", "days": 0}, "days"),
        ({"location": "Berlin", "days": 17}, "days"),
    ],
)
def test_invalid_arguments_are_rejected_naming_the_field(arguments: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WeatherArgs.model_validate(arguments)
    assert [error["loc"][0] for error in caught.value.errors()] == [field]
