"""Property test: no job spec, however odd, makes the API answer 5xx."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Grid

_any_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(),
                        st.text(max_size=20))
_number = st.one_of(st.integers(-1000, 10**6), st.floats(allow_nan=False, allow_infinity=False), _any_scalar)

job_specs = st.fixed_dictionaries(
    {"command": st.one_of(st.lists(st.text(max_size=10), max_size=3), _any_scalar)},
    optional={
        "cores": _number, "memory_gb": _number, "devices": _number, "duration_s": _number, "data_gb": _number,
        "resource_class": st.one_of(st.sampled_from(["general", "intelligent", "super", "quantum"]), _any_scalar),
        "service_level": st.one_of(st.sampled_from(["guaranteed", "standard", "spot"]), _any_scalar),
        "on_lost": st.one_of(st.sampled_from(["requeue", "fail"]), _any_scalar),
        "device_model": st.one_of(st.sampled_from(["", "H800", "A10", "nope"]), _any_scalar),
        "deadline": _number, "not_before": _number, "max_price_fen": _number, "latency_ms_max": _number,
        "consumer_site": st.one_of(st.just("local"), _any_scalar),
        "env": st.one_of(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2), _any_scalar),
        "priority": _number,
        "bogus": _any_scalar,
    },
)


def test_random_job_specs_never_cause_a_server_error(grid: Grid) -> None:
    grid.register()
    consumer = grid.consumer

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(spec=job_specs)
    def check(spec: dict) -> None:
        # json.dumps writes Infinity/NaN too, which a careless server would choke on
        r = consumer.post("/api/v1/jobs", content=json.dumps(spec), headers={"Content-Type": "application/json"})
        assert r.status_code < 500, (spec, r.status_code, r.text)
        if r.status_code >= 400:
            assert r.json()["detail"], "an error must say what is wrong"

    check()
