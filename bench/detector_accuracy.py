"""Detector scores that can fail: REAL (iRacing's own incident counter) and SIMULATED (independent truth).

REAL: every .ibt under ../shared/data/iracing/ibt through the incident detector, with
all channels and with the counter and track surface removed (motion only), against the
increments of iRacing's own ``PlayerCarTeamIncidentCount``/``PlayerCarMyIncidentCount``
in the same file; and what the 316 session-info updates of the real F4 race hold about
incidents (``ResultsPositions[].Incidents``) per session.

SIMULATED: races of the simulator's *independent* truth model (per-race fatigue
processes and physical incident causes the detectors share no constant with,
docs/simulator.md) on the scoring seeds, and for contrast the same seeds on the classic
model whose shapes the detectors were built from (circular).

Precision and recall carry Wilson 95 % intervals. It writes JSON to bench/out/ and the
block between ``<!-- detectors:start -->`` and ``<!-- detectors:end -->`` of
docs/accuracy.md. The tuning seeds are run too (``--no-tuning`` skips them) and shown
apart: what the fatigue analyzer's correction gain was fitted on, not a score.

    .venv/bin/python bench/detector_accuracy.py [--laps 150] [--seeds 5] [--no-classic]
        [--no-tuning]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import REAL_DATA, REPO, machine, write_result

from training.detector_scoring import (
    SCORING_SEEDS,
    TUNING_SEEDS,
    Counts,
    RaceScore,
    RealFileScore,
    SessionUpdatesSurvey,
    pooled,
    score_real_file,
    simulate_and_score,
    survey_session_updates,
)

COMMAND = ".venv/bin/python bench/detector_accuracy.py"
F4_RACE = REAL_DATA / "iracing" / "session_yaml" / "vrkit_f4_tsukuba_race"
SIM: dict[str, Any] = {
    "opponents": 5,
    "incidents": 2.0,
    "fatigue": 2.0,
    "stints_per_driver": 3,
    "grid_position": 3,
}
BLOCK = re.compile(r"<!-- detectors:start -->.*?<!-- detectors:end -->", re.S)
# What each real detection's trace shows (read by hand from Speed, YawRate, LongAccel,
# LatAccel around it; these files have no incident counter, so nothing else can say).
TRACE_READING = {
    "skmodified_langley_2015-05-28_14-45-28": "car braking to a stop from 14 m/s; two "
    "-25 m/s² samples at 8 m/s, no yaw: a hard stop, not clearly an incident",
    "skmodified_langley_2015-05-28_14-49-50": "a lateral impulse over 3 samples (90, 60, "
    "28 m/s² lat; -64 m/s² long) at 39 m/s, 2 m/s lost in 0.1 s, no yaw: a wall brush",
    "skmodified_martinsville_2015-05-30_20-32-44": "73 m/s² lateral hit at 22 m/s, "
    "yaw rate 7.6 rad/s, stopped 1.2 s later: a wall hit and spin (an incident)",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laps", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=len(SCORING_SEEDS))
    parser.add_argument("--no-classic", action="store_true")
    parser.add_argument("--no-tuning", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "accuracy.md")
    args = parser.parse_args()
    started = time.time()
    ibt_dir = REAL_DATA / "iracing" / "ibt"
    real = [score_real_file(p) for p in sorted(ibt_dir.glob("*.ibt"))]
    survey = survey_session_updates(F4_RACE) if F4_RACE.is_dir() else None
    seeds = SCORING_SEEDS[: args.seeds]
    independent: list[RaceScore] = []
    classic: list[RaceScore] = []
    for seed in seeds:
        print(f"independent model, seed {seed} ...", flush=True)
        independent.append(
            simulate_and_score(f"seed {seed}", laps=args.laps, seed=seed, **SIM)
        )
        if not args.no_classic:
            print(f"classic model, seed {seed} ...", flush=True)
            classic.append(
                simulate_and_score(
                    f"seed {seed}",
                    truth_model="classic",
                    laps=args.laps,
                    seed=seed,
                    **SIM,
                )
            )
    tuning: list[RaceScore] = []
    for seed in () if args.no_tuning else TUNING_SEEDS:
        print(f"independent model, tuning seed {seed} ...", flush=True)
        tuning.append(
            simulate_and_score(f"tuning seed {seed}", laps=args.laps, seed=seed, **SIM)
        )
    block = render(real, survey, independent, classic, args.laps, machine(), tuning)
    old = args.out.read_text() if args.out.is_file() else ""
    if BLOCK.search(old):
        text = BLOCK.sub(lambda _m: block, old)
    else:
        text = old.rstrip("\n") + "\n\n" + block + "\n"
    args.out.write_text(text)
    path = write_result(
        "detector_accuracy",
        headline(independent, real),
        raw(real, survey, independent, classic, tuning),
    )
    print(block)
    print(f"written to {args.out} and {path} in {time.time() - started:.0f} s")
    return 0


# ---- figures ------------------------------------------------------------------------
def _ci(c: Counts, which: str) -> str:
    value = c.precision if which == "p" else c.recall
    lo, hi = c.precision_ci if which == "p" else c.recall_ci
    n = c.found if which == "p" else c.reference
    if n == 0:
        return "— (n=0)"
    return f"{value * 100:.0f} % [{lo * 100:.0f}–{hi * 100:.0f}] (n={n})"


def _fatigue_mae(scores: list[RaceScore]) -> float:
    errors = [e for s in scores for e in s.fatigue_errors]
    return float(np.mean(errors)) if errors else float("nan")


def headline(scores: list[RaceScore], real: list[RealFileScore]) -> dict[str, Any]:
    inc = pooled(s.incidents for s in scores)
    real_events = sum(r.events for r in real)
    return {
        "sim_incident_precision": {
            "value": round(inc.precision, 4),
            "unit": "fraction",
            "better": "higher",
            "bar": "SIMULATED, independent truth model, scoring seeds",
        },
        "sim_incident_recall": {
            "value": round(inc.recall, 4),
            "unit": "fraction",
            "better": "higher",
            "bar": "SIMULATED, independent truth model, scoring seeds",
        },
        "sim_fatigue_mae": {
            "value": round(_fatigue_mae(scores), 4),
            "unit": "level",
            "better": "lower",
            "bar": "SIMULATED, independent truth model",
        },
        "real_counter_events": {
            "value": real_events,
            "unit": "increments",
            "better": "higher",
            "bar": "REAL: iRacing counter increments in the .ibt files we hold",
        },
    }


def _counts(c: Counts) -> dict[str, Any]:
    return {
        "hits": c.hits,
        "found": c.found,
        "reference": c.reference,
        "reference_hits": c.reference_hits,
        "precision": c.precision,
        "recall": c.recall,
        "precision_ci": c.precision_ci,
        "recall_ci": c.recall_ci,
    }


def _race(s: RaceScore) -> dict[str, Any]:
    return {
        "label": s.label,
        "laps": s.laps,
        "race_s": s.race_s,
        "incidents": _counts(s.incidents),
        "motion_only": _counts(s.motion_only),
        "by_type": {k: _counts(v) for k, v in s.by_type.items()},
        "type_right": s.incident_type_right,
        "points_right": s.incident_points_right,
        "uncounted": s.uncounted,
        "uncounted_found": s.uncounted_found,
        "fatigue": _counts(s.fatigue),
        "fatigue_mae": float(np.mean(s.fatigue_errors)) if s.fatigue_errors else None,
        "damage": _counts(s.damage),
        "passes": _counts(s.passes),
    }


def raw(
    real: list[RealFileScore],
    survey: SessionUpdatesSurvey | None,
    independent: list[RaceScore],
    classic: list[RaceScore],
    tuning: list[RaceScore],
) -> dict[str, Any]:
    return {
        "real_files": [
            {
                "name": r.name,
                "seconds": r.seconds,
                "counter": r.counter,
                "counter_range": r.counter_range,
                "events": r.events,
                "points": r.points,
                "full": _counts(r.full),
                "motion": _counts(r.motion),
                "detections": r.detections,
                "note": r.note,
            }
            for r in real
        ],
        "f4_session_updates": None
        if survey is None
        else {"updates": survey.updates, "sessions": survey.sessions},
        "independent": [_race(s) for s in independent],
        "classic": [_race(s) for s in classic],
        "tuning": [_race(s) for s in tuning],
        "sim_options": SIM,
        "scoring_seeds": list(SCORING_SEEDS),
        "tuning_seeds": list(TUNING_SEEDS),
    }


# ---- the document block ---------------------------------------------------------------
def render(
    real: list[RealFileScore],
    survey: SessionUpdatesSurvey | None,
    independent: list[RaceScore],
    classic: list[RaceScore],
    laps: int,
    machine_line: str,
    tuning: list[RaceScore] | None = None,
) -> str:
    out: list[str] = ["<!-- detectors:start -->"]
    w = out.append
    w("## Detectors: REAL and SIMULATED scores (issue 13 §3)")
    w("")
    w(
        f"Produced by `{COMMAND}` (writes this block and `bench/out/detector_accuracy-*.json`)."
    )
    w(f"Run: {machine_line}")
    w("")
    w("Every figure is marked **REAL** (recorded by iRacing, judged by iRacing's own")
    w(
        "incident counter) or **SIMULATED** (our simulator's labels). Intervals are Wilson"
    )
    w(
        "95 %; *n* is the number of detections (precision) or of reference events (recall)."
    )
    w("")
    _render_real(w, real)
    _render_f4(w, survey)
    _render_sim(w, independent, classic, laps, tuning or [])
    w("<!-- detectors:end -->")
    return "\n".join(out)


def _render_real(w: Any, real: list[RealFileScore]) -> None:
    w("### REAL: the incident detector against iRacing's counter, per .ibt file")
    w("")
    w("Reference events: rises of `PlayerCarTeamIncidentCount` (else")
    w("`PlayerCarMyIncidentCount`) in the file, rises within 3 s of each other = one;")
    w("a detection is right when it starts within 3 s of one. *Motion only*: the same")
    w("file with the counter and `PlayerTrackSurface` removed (what the detector has")
    w("when iRacing cannot tell it).")
    w("")
    w(
        "| file | s | counter | counter range | real events | detections | precision "
        "| recall | motion only: detections | precision | recall | note |"
    )
    w("|---|---:|---|---|---:|---:|---|---|---:|---|---|---|")
    for r in real:
        span = (
            "—"
            if r.counter_range is None
            else f"{r.counter_range[0]}–{r.counter_range[1]}"
        )
        w(
            f"| {r.name} | {r.seconds:.1f} | {r.counter or 'none'} | {span} "
            f"| {r.events if r.counter else '—'} | {r.full.found} "
            f"| {_ci(r.full, 'p') if r.counter else 'no truth'} "
            f"| {_ci(r.full, 'r') if r.counter else 'no truth'} | {r.motion.found} "
            f"| {_ci(r.motion, 'p') if r.counter else 'no truth'} "
            f"| {_ci(r.motion, 'r') if r.counter else 'no truth'} | {r.note} |"
        )
    with_counter = [r for r in real if r.counter]
    events = sum(r.events for r in with_counter)
    seconds = sum(r.seconds for r in with_counter)
    found = sum(r.full.found for r in with_counter)
    w("")
    w(
        f"**REAL, pooled over the files with a counter ({len(with_counter)} files, "
        f"{seconds:.1f} s): {events} real incident events, {found} detections.** "
        + (
            "Precision and recall cannot be estimated from zero events: the real "
            "telemetry we hold does not test the incident detector. What it shows is "
            f"no false alarm in {seconds:.1f} s of counter-checked driving."
            if events == 0
            else ""
        )
    )
    unscored = [(r, d) for r in real if not r.counter for d in r.detections]
    if unscored:
        w("")
        w(
            "Detections in the files without a counter (2015 builds): no iRacing "
            "judgement exists for them; what the trace shows, read by hand:"
        )
        w("")
        w("| file | t s | detector says | the trace |")
        w("|---|---:|---|---|")
        for r, d in unscored:
            w(
                f"| {r.name} | {d['t']} | {d['incident']} (confidence {d['confidence']}) "
                f"| {TRACE_READING.get(r.name, '—')} |"
            )
    w("")


def _render_f4(w: Any, survey: SessionUpdatesSurvey | None) -> None:
    w("### REAL: the F4 race's 316 session-info updates (incidents per car)")
    w("")
    if survey is None:
        w(f"`{F4_RACE}` is absent: not measured.")
        w("")
        return
    w(
        "`ResultsPositions[].Incidents` per car, followed from update to update "
        f"({survey.updates} updates). *Rises*: a car's count higher than in the "
        "update before (the only timed incident truth session info can give)."
    )
    w("")
    w(
        "| session | updates with results | cars | laps | incident points | cars with points | rises | updates with points > 0 |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in survey.sessions.items():
        w(
            f"| {name} | {s['updates_with_results']} | {s['cars']} | {s['laps']} "
            f"| {s['points']} | {s['cars_with_points']} | {s['increments']} "
            f"| {s['points_nonzero_updates']} |"
        )
    w("")
    w("What this allows: **nothing to score a detector against.** In every race update")
    w("every car's `Incidents` is 0 (iRacing does not publish other drivers' counts")
    w("during an official race, and this recording's own car is a spectator slot,")
    w("`DriverIncidentCount` 0). Practice and qualifying totals arrive as totals")
    w("(qualifying's rises all come with the one update that posts its results), not")
    w("when they happened, and the race has no telemetry to run a detector on.")
    w("")


def _sim_row(label: str, s: RaceScore | None, scores: list[RaceScore]) -> str:
    inc = s.incidents if s else pooled(x.incidents for x in scores)
    motion = s.motion_only if s else pooled(x.motion_only for x in scores)
    fat = s.fatigue if s else pooled(x.fatigue for x in scores)
    dmg = s.damage if s else pooled(x.damage for x in scores)
    group = [s] if s else scores
    laps = sum(x.laps for x in group)
    minutes = sum(x.race_s for x in group) / 60
    type_right = sum(x.incident_type_right for x in group)
    points_right = sum(x.incident_points_right for x in group)
    zero = sum(x.uncounted for x in group)
    zero_found = sum(x.uncounted_found for x in group)
    mae = _fatigue_mae(group)
    return (
        f"| {label} | {laps} | {minutes:.0f} | {_ci(inc, 'p')} | {_ci(inc, 'r')} "
        f"| {type_right}/{inc.reference_hits} | {points_right}/{inc.reference_hits} "
        f"| {zero_found}/{zero} | {_ci(motion, 'p')} | {_ci(motion, 'r')} "
        f"| {_ci(fat, 'p')} | {_ci(fat, 'r')} | {mae:.3f} | {_ci(dmg, 'p')} "
        f"| {_ci(dmg, 'r')} |"
    )


def _render_sim(
    w: Any,
    independent: list[RaceScore],
    classic: list[RaceScore],
    laps: int,
    tuning: list[RaceScore],
) -> None:
    w(
        "### SIMULATED: independent truth model (the detectors share none of its constants)"
    )
    w("")
    w(
        f"{len(independent)} races of {laps} laps, options {SIM}, "
        '`truth_model="independent"`, scoring seeds '
        f"{', '.join(s.label.split()[-1] for s in independent)} (tuning seeds "
        f"{', '.join(map(str, TUNING_SEEDS))} are kept apart: the fatigue analyzer's "
        "steering-correction gain was fitted on them, nothing on the scoring seeds). "
        "Fatigue: per-driver time constant, curve shape, "
        "recovery and random fluctuation, acting on braking points, throttle and "
        "steering corrections with per-driver weights; incidents: late braking at "
        "corner entry of drawn size, turning into a save (0x), running wide (0x), an "
        "off-track (1x), a spin (2x) or contact with the car ahead (light 0x / heavy "
        "4x) with drawn shapes (docs/simulator.md)."
    )
    w("")
    w(
        "| race | laps | min | incidents P | incidents R | type right | points right "
        "| 0x events matched | motion-only P | motion-only R | fatigued P | fatigued R "
        "| fatigue MAE | damage P | damage R |"
    )
    w("|---|---:|---:|---|---|---:|---:|---:|---|---|---|---|---:|---|---|")
    for s in independent:
        w(_sim_row(s.label, s, independent))
    if independent:
        w(_sim_row("**all (SIMULATED)**", None, independent))
    w("")
    by_type: dict[str, Counts] = {}
    motion_by_type: dict[str, Counts] = {}
    for s in independent:
        for k, c in s.by_type.items():
            by_type.setdefault(k, Counts()).add(c)
        for k, c in s.motion_by_type.items():
            motion_by_type.setdefault(k, Counts()).add(c)
    w("By the worst counted stage of a sequence (recall):")
    w("")
    w("| worst counted stage | sequences | all channels | motion only |")
    w("|---|---:|---|---|")
    for kind, c in by_type.items():
        m = motion_by_type.get(kind, Counts())
        w(f"| {kind} | {c.reference} | {_ci(c, 'r')} | {_ci(m, 'r')} |")
    passes = pooled(s.passes for s in independent)
    w("")
    w(
        f"Pass prediction (SIMULATED): precision {_ci(passes, 'p')}, recall "
        f"{_ci(passes, 'r')}."
    )
    w("")
    if tuning:
        w("### SIMULATED, independent model, tuning seeds (fitted on: not a score)")
        w("")
        w("The fatigue analyzer's `CORRECTION_GAIN` was chosen on these races; shown")
        w("so the gap to the scoring seeds above can be seen.")
        w("")
        w(
            "| race | laps | min | incidents P | incidents R | type right | points right "
            "| 0x events matched | motion-only P | motion-only R | fatigued P | fatigued R "
            "| fatigue MAE | damage P | damage R |"
        )
        w("|---|---:|---:|---|---|---:|---:|---:|---|---|---|---|---:|---|---|")
        for s in tuning:
            w(_sim_row(s.label, s, tuning))
        w(_sim_row("**all (tuning)**", None, tuning))
        w("")
    if classic:
        w("### SIMULATED, classic model (circular: for contrast only)")
        w("")
        w("The same seeds on the classic model, whose constants the detectors share")
        w("(points ↔ stage mapping, fatigue as steering noise with a 90-minute time")
        w("constant). These were the figures docs/accuracy.md used to show.")
        w("")
        w(
            "| race | laps | min | incidents P | incidents R | type right | points right "
            "| 0x events matched | motion-only P | motion-only R | fatigued P | fatigued R "
            "| fatigue MAE | damage P | damage R |"
        )
        w("|---|---:|---:|---|---|---:|---:|---:|---|---|---|---|---:|---|---|")
        w(_sim_row("**all (classic)**", None, classic))
        w("")
    w("Definitions: a detection is right when `incident_detected` starts within 3 s")
    w("of the start of a sequence the (simulated) counter counted (points > 0); a")
    w("detection that matches only a 0x sequence (a save, a light contact) counts")
    w("against precision and is shown in *0x events matched*. *Type right*: the")
    w("worst counted stage named correctly; *points right*: `points` equals what the")
    w("counter added. Fatigue per green lap with the last published level: *fatigued*")
    w("= level ≥ 0.5; MAE of the level against the simulator's. Damage: an immediate")
    w("`damage_alert` within 2 s of a truth damage event.")
    w("")


if __name__ == "__main__":
    sys.exit(main())
