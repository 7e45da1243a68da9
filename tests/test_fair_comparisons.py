"""Fair comparisons on hand-made data: input vs step time, devices in the verdict, compile_s only
where a mode compiles, cells that never converged ranked last, peak_fraction per device."""

from __future__ import annotations

import time

import pytest

from spotdiff.devices import cell_device, device_label, peak_fraction
from spotdiff.measure import rate_spread, repeat_spread, split_input_wait, timed_epoch
from spotdiff.report.html import _columns, _rows, summary_rows
from spotdiff.tasks.digits.common import input_metrics


def test_timed_epoch_splits_waiting_for_batches_from_the_step():
    def slow_batches():
        for index in range(3):
            time.sleep(0.02)  # the input pipeline
            yield index

    synced = []
    outputs, input_s, step_s = timed_epoch(slow_batches(), lambda b: time.sleep(0.01) or b * 10,
                                           synced.append)
    assert outputs == [0, 10, 20] and synced == [0, 10, 20]  # every step's output waited for
    assert 0.06 <= input_s < 0.09 and 0.03 <= step_s < 0.06


def test_split_input_wait_counts_only_the_time_a_step_waited_for_its_batch():
    begin, end = [0.0, 1.0, 2.0], [0.5, 1.5, 2.5]
    ready = [-1.0, 1.2, 2.9]  # ready early: no wait; 0.2 s late; later than the step's end: capped
    input_s, step_s = split_input_wait(begin, end, ready)
    assert input_s == pytest.approx(0.7) and step_s == pytest.approx(0.8)
    with pytest.raises(ValueError):
        split_input_wait(begin, end, ready[:2])


def test_input_metrics_leave_out_the_first_epoch_and_refuse_missing_data():
    m = input_metrics([5.0, 2.0, 2.0], [0.1, 0.5, 0.7], [4.8, 1.4, 1.2], n_train=100)
    assert m["input_s"] == pytest.approx(0.6) and m["step_s"] == pytest.approx(1.3)
    assert m["input_fraction"] == pytest.approx(1.2 / 4.0)
    assert m["compute_images_per_s"] == pytest.approx(200 / 2.6)
    spread = (m["compute_images_per_s_min"], m["compute_images_per_s_max"])
    assert spread == pytest.approx((100 / 1.4, 100 / 1.2))
    assert set(input_metrics([1.0, 1.0], None, None, 10).values()) == {None}
    assert set(input_metrics([1.0, 1.0], [0.1], [0.9], 10).values()) == {None}  # one epoch short


def test_steady_epochs_give_digits_its_spread_and_one_epoch_gives_none():
    assert rate_spread("ips", [2.0, 2.5, 4.0], 100) == pytest.approx({"ips_min": 25.0, "ips_max": 50.0})
    assert repeat_spread("epoch_s", [2.0, 2.5, 4.0]) == {"epoch_s_min": 2.0, "epoch_s_max": 4.0}
    assert rate_spread("ips", [2.0], 100) == {} and rate_spread("ips", [0.0, 1.0], 100) == {}
    assert repeat_spread("epoch_s", [2.0]) == {}


def test_device_labels_say_when_auto_fell_back_to_the_cpu():
    assert device_label("auto", "/CPU:0") == "cpu (auto: no GPU)"
    assert device_label("auto", "cuda:0") == "gpu" and device_label("cpu", "cpu:0") == "cpu"
    assert device_label("gpu", "cpu") == "cpu (--device gpu: no GPU)"
    assert cell_device({"environment": {"settings": {"device": "gpu:0"}}}) == "gpu"


def test_peak_fraction_divides_by_the_peak_of_the_device_the_cell_ran_on():
    assert peak_fraction(10.0, "cpu (auto: no GPU)", cpu_peak_gflops=100.0) == pytest.approx(0.1)
    assert peak_fraction(10.0, "gpu", cpu_peak_gflops=100.0) is None  # never the CPU's peak
    assert peak_fraction(10.0, "gpu", 100.0, device_peak_gflops=1000.0) == pytest.approx(0.01)


def _cell(framework, mode, metrics, device="cpu", status="ok", variant="manual"):
    return {"id": f"{framework}-{mode}", "task": "exponent", "framework": framework, "mode": mode,
            "variant": variant, "seed": 0, "status": status, "metrics": metrics, "series": {},
            "environment": {"settings": {"device": device, "device_label": device}}}


def _row(results, metric):
    return next(r for r in summary_rows(results) if r["metric"] == metric)


def test_a_cell_that_never_converged_is_ranked_last_not_dropped():
    results = {"cells": [
        _cell("torch", "eager", {"steps_to_converge": None, "steady_step_us": 5.0}),
        _cell("jax", "jit", {"steps_to_converge": 300, "steady_step_us": 9.0}),
    ]}
    row = _row(results, "steps_to_converge")
    assert row["best"] == "jax-jit" and row["runner_up"] == "torch-eager"
    assert row["runner_up_figure"] == "never converged" and row["verdict"] == "clear difference"
    assert row["ranking"] == ["jax-jit", "torch-eager"]
    results["cells"][1]["metrics"]["steps_to_converge"] = None
    assert _row(results, "steps_to_converge")["verdict"] == "never converged"


def test_gpu_and_cpu_cells_are_never_ranked_without_their_device():
    results = {"cells": [
        _cell("torch", "eager", {"steady_step_us": 5.0}, device="gpu"),
        _cell("jax", "jit", {"steady_step_us": 50.0}, device="cpu (auto: no GPU)"),
    ]}
    row = _row(results, "steady_step_us")
    assert row["best"] == "torch-eager [gpu]" and row["runner_up"] == "jax-jit [cpu (auto: no GPU)]"
    results["cells"][0]["environment"]["settings"].update(device="cpu", device_label="cpu")
    results["cells"][1]["environment"]["settings"].update(device="cpu", device_label="cpu")
    assert _row(results, "steady_step_us")["best"] == "torch-eager"  # one device: names stay short


def test_auto_fallback_alone_is_shown_in_the_verdict():
    results = {"cells": [_cell(fw, m, {"steady_step_us": v}, device="cpu (auto: no GPU)")
                         for fw, m, v in (("torch", "eager", 5.0), ("jax", "jit", 9.0))]}
    assert _row(results, "steady_step_us")["best"] == "torch-eager [cpu (auto: no GPU)]"


def test_compile_s_is_shown_only_for_modes_that_compile():
    results = {"cells": [
        _cell("torch", "eager", {"steady_step_us": 5.0, "compile_s": 0.2}),
        _cell("torch", "compile", {"steady_step_us": 4.0, "compile_s": 3.5}),
    ]}
    columns = _columns(results, "exponent")
    index = [c["key"] for c in columns].index("compile_s")
    rows = {r["mode"]: r for r in _rows(results, "exponent", columns)}
    assert rows["eager"]["values"][index]["text"] == "–"
    assert rows["compile"]["values"][index]["text"] != "–"
    assert rows["compile"]["device"] == "cpu"
