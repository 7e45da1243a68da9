"""The terminal paragraph of `spotdiff where`: what a porting engineer acts on (plain text)."""

from __future__ import annotations

from typing import Any


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _place(row: dict[str, Any]) -> str:
    what = {"forward": "forward output of", "loss": "the loss", "backward": "gradient of",
            "update": "update of"}[row["phase"]]
    name = "" if row["phase"] == "loss" else f" {row['name']}"
    kind = f" ({row['kind']})" if row["kind"] not in ("loss", "param", row["name"]) else ""
    return f"step {row['step']}, {what}{name}{kind}"


def _chain(chain: list[dict[str, Any]]) -> str:
    """Causes found one after another, each confirmed by a rerun on top of the ones before it."""
    names = " and ".join(c["cause"] for c in chain)
    text = f" Causes ({len(chain)}, one after another): {names}."
    for index, cause in enumerate(chain):
        also = " as well" if index else ""
        what = ("the divergence" if cause["outcome"] == "confirmed"
                else "the first divergence left (another remains)")
        text += (f" {cause['cause']} — {cause['what_differs']}; aligning it{also} in "
                 f"{', '.join(cause['aligned_by'])} removes {what}, ratio at that tensor "
                 f"{_g(cause['ratio_at_first_before'])} -> {_g(cause['ratio_at_first_after'])}, largest "
                 f"ratio {_g(cause['max_ratio_before'])} -> {_g(cause['max_ratio_after'])}.")
    if chain[-1]["outcome"] != "confirmed":
        text += " Something else remains beyond these: no further documented default applied."
    return text


def paragraph(result: dict[str, Any]) -> str:
    """One paragraph: where, who, why (only if a rerun confirmed it), and the noise floor."""
    base, names = result["base"], ", ".join(result["frameworks"])
    head = f"{result['task']} ({names}; {result['steps']} steps, float32 vs float64 floor):"
    failed = "".join(f" {n} recorded nothing usable ({why})." for n, why in base["failures"].items())
    if base["status"] == "no divergence":
        worst = max(base["pairs"].items(), key=lambda kv: kv[1]["max_ratio"] or 0.0)
        row = worst[1]["rows"][worst[1]["max_row"]]
        return (f"{head} no divergence: every compared tensor is within its measured float32 noise "
                f"floor; the largest ratio is {_g(row['ratio'])} (x the floor, threshold "
                f"{_g(result['threshold'])}) at {_place(row)} ({worst[0].replace('|', ' vs ')}).{failed}")
    if base["status"] != "diverges":
        notes = [f"{pair.replace('|', ' vs ')}: {v['rows'][v['unusable']]['note']} at "
                 f"{_place(v['rows'][v['unusable']])}" for pair, v in base["pairs"].items()
                 if v["unusable"] is not None]
        reason = "; ".join(notes) or ("not every framework recorded both float32 and float64"
                                      if base["failures"] else
                                      "fewer than two frameworks recorded both float32 and float64")
        return f"{head} no verdict: {reason}.{failed}"
    first = base["first"]
    row, intro = first["row"], first["introduced"]
    pair = " vs ".join(first["pair"])
    text = (f"{head} first divergence at {_place(row)} ({pair}): the float64 runs differ by "
            f"{_g(row['diff64'])} (float32: {_g(row['diff32'])}), {_g(row['ratio'])}x the measured "
            f"float32 noise floor {_g(row['floor'])}.")
    if intro["key"] != row["key"]:
        text += f" It grows most at {_place(intro)} (ratio {_g(intro['ratio'])})."
    else:
        text += " Its inputs agree within the floor: the difference is introduced there."
    odd = base["odd_one_out"]
    if odd:
        others = [n for n in result["frameworks"] if n != odd and n not in base["failures"]]
        listed = " and ".join([", ".join(others[:-1]), others[-1]] if len(others) > 2 else others)
        text += f" {odd} is the odd one out: it differs from {listed}, which agree."
    elif len(result["frameworks"]) - len(base["failures"]) < 3:
        text += " With two frameworks the vote cannot say which one is off."
    cause = result["cause"]
    if len(result.get("chain") or ()) > 1:
        text += _chain(result["chain"])
    elif cause:
        partly = (" the first divergence (another remains)" if cause["outcome"] == "partly"
                  else " the divergence")
        text += (f" Cause: {cause['cause']} — {cause['what_differs']}. Confirmed by a rerun with it "
                 f"aligned in {', '.join(cause['aligned_by'])}: it removes{partly}, ratio at that "
                 f"tensor {_g(cause['ratio_at_first_before'])} -> {_g(cause['ratio_at_first_after'])}, "
                 f"largest ratio {_g(cause['max_ratio_before'])} -> {_g(cause['max_ratio_after'])}.")
    elif result["causes"]:
        tried = ", ".join(f"{c['cause']} ({c['outcome']})" for c in result["causes"])
        text += f" No cause named: aligning each candidate did not remove it ({tried})."
    else:
        text += " No documented default applies to this layer or optimiser: no cause named."
    return text + failed
