"""Per-term loss curves of a run, kept in memory and drawn to a PNG at the end."""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ignite.engine import Engine, Events

from unimiss_monai.data.output_ledger import check_own_files, drawn_by_matplotlib, replacing_own
from unimiss_monai.data.writers import atomic_path, save_json
from unimiss_monai.visualize.phase_curves import draw_phase_lines, phase_blocks, phase_lines, phase_styles, shade_phases

__all__ = ["EpochLossMeans", "LossCurvePlotter", "scalar_outputs"]

logger = logging.getLogger(__name__)

# trainer outputs that are not loss terms (CollapseMonitor averages the teacher statistics itself)
_NOT_LOSS_TERMS = ("lr", "skipped", "total", "teacher_entropy", "teacher_batch_entropy", "center_norm")


def scalar_outputs(output) -> dict[str, float]:
    """The float entries of a trainer output dict (drops ``phase`` and other non-numbers), for Stats/TensorBoard."""
    if not isinstance(output, dict):
        return {}
    return {k: float(v) for k, v in output.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class EpochLossMeans:
    """Puts the epoch mean of every loss term of ``engine.state.output`` into ``engine.state.metrics`` as
    ``"epoch/<term>"``, so epoch-level loggers (``StatsHandler``, ``TensorBoardStatsHandler``, MONAI's
    ``MLFlowHandler`` from ``--tracking mlflow``, which logs only ``loss`` per iteration) see each term.

    A term missing from an epoch (e.g. the CT-only terms in an X-ray epoch) is absent from that epoch's metrics.
    Attach it before the loggers that read the metrics.

    Args:
        keys: output keys to average; default every numeric output except ``lr``, ``skipped``, ``total`` and the
            teacher statistics.
        prefix: metric name prefix.
    """

    def __init__(self, keys: list[str] | None = None, prefix: str = "epoch/") -> None:
        self.keys, self.prefix = keys, prefix
        self.values: dict[str, list[float]] = defaultdict(list)
        self.published: set[str] = set()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.values.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.publish)

    def record(self, engine: Engine) -> None:
        for k, v in scalar_outputs(engine.state.output).items():
            if (k not in _NOT_LOSS_TERMS) if self.keys is None else (k in self.keys):
                self.values[k].append(v)

    def publish(self, engine: Engine) -> None:
        # a term absent from this epoch must not keep the previous epoch's value
        for name in self.published:
            engine.state.metrics.pop(name, None)
        self.published = {self.prefix + k for k in self.values}
        for k, v in self.values.items():
            engine.state.metrics[self.prefix + k] = sum(v) / len(v)


class LossCurvePlotter:
    """Records the numeric entries of ``engine.state.output`` every iteration (rank 0) and, when the run completes
    (or is interrupted), writes ``<path>`` (PNG: one panel per group of terms, log-scaled losses) and the
    values beside it, ``<path>`` with the suffix ``.json`` (``loss_curves.png`` -> ``loss_curves.json``):
    ``{term: [[iteration, value, phase], ...]}``, the phase (``"ct"``, ``"xray"``) of the output's ``phase``.
    A run that fails still raises its error after the curves are written.

    The terms summed into ``loss`` change with the phase, so the picture draws each phase of a term as a line of its
    own (CT solid, X-ray dashed), averaged over that phase's iterations only, and shades the phases where they switch
    few enough times to read. Curves written before the phase was recorded (``[iteration, value]``) are one phase.
    A run resumed from such curves gives their points the phase their terms show, once a term is known to be of one
    phase alone (recorded in every iteration of that phase and in none of the other, in the file or by this run):
    a point that has it is of that phase; one that lacks it, of the other where the run's phase settings
    (``phase_mode``, ``ct_epochs``, ``xray_epochs``, the epoch length) agree. The checkpoint does not record those
    settings, so the log warns where they contradict a phase recorded or shown; points whose terms do not tell their
    phase get the settings' with a warning that this is an assumption, where nothing contradicts the settings.
    Other points stay without one, drawn dotted as ``phase not recorded`` (logged).

    The values are also written after the first iteration, every ``write_every`` iterations and after every epoch; a
    resumed run (its first iteration is not the first) starts from those of the iterations before it, so the curves
    of a run killed and resumed cover the whole run when ``write_every`` is the checkpoints' interval (a gap left by a
    kill between the two writes is logged). A file of either name that this package did not write there stops the
    run before its first iteration, and stays.

    Args:
        path: PNG file to write.
        keys: output keys to plot; default every loss term plus ``teacher_entropy`` and ``center_norm``.
        smoothing: moving-average window drawn over the raw values of each phase (1: none).
        write_every: iterations between writes of the values (0: at epoch ends only); the checkpoints' interval, with
            this handler attached before the checkpoint's, keeps a resumed run's curves whole.
    """

    def __init__(self, path: str | os.PathLike, keys: list[str] | None = None, smoothing: int = 10,
                 write_every: int = 0) -> None:
        self.path, self.keys, self.smoothing = Path(path), keys, max(1, int(smoothing))
        self.write_every = max(0, int(write_every))
        self.history: dict[str, list[tuple]] = defaultdict(list)  # (iteration, value[, phase]) per term
        self._first: int | None = None  # the first iteration this run recorded: 1 unless it was resumed
        self._rule: Callable[[int], str] | None = None  # the phase the resumed run's data gives each iteration
        self._unphased = False  # points written without a phase wait for terms that tell theirs

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._check_files)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write_values)
        if self.write_every:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.write_every), self.write_values)
        # the picture last, behind every handler attached by then (the final checkpoint and export): listed first so
        # that an iteration's values precede its checkpoint, the plotter must not let a failed picture cost the model
        engine.add_event_handler(Events.STARTED, self._write_last)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._write_and_raise)

    def _write_last(self, engine: Engine) -> None:
        if not engine.has_event_handler(self.write, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self.write)

    def _write_and_raise(self, engine: Engine, error: BaseException) -> None:
        # once any EXCEPTION_RAISED handler is registered, ignite no longer raises the run's error itself, and it
        # stops at the first handler that raises. So the error is raised by a handler added behind every other one:
        # a handler attached after this one (MONAI's StatsHandler logs the error, then raises it) still runs, and a
        # failed run never returns as if it had finished (and exits 0). A failure to draw the curves must not
        # replace the run's error either.
        try:
            self.write(engine)
        except Exception:  # noqa: BLE001 - the run's own error is the one to report
            logger.exception("loss curves of the failed run not written to %s", self.path)
        if not engine.has_event_handler(self._raise, Events.EXCEPTION_RAISED):
            engine.add_event_handler(Events.EXCEPTION_RAISED, self._raise)  # runs after the handlers registered now

    @staticmethod
    def _raise(engine: Engine, error: BaseException) -> None:
        raise error

    def record(self, engine: Engine) -> None:
        first = self._first is None
        if first:  # decided once: a resumed run continues the values written before it
            self._first = engine.state.iteration
        output = engine.state.output
        phase = output.get("phase") if isinstance(output, dict) else None
        if first and self._first > 1:
            self.history = self._earlier_history(self._first)
        # the phase of each point: the picture must know where the summed terms change (a phase-less trainer: none)
        tail = (phase,) if isinstance(phase, str) else ()
        for k, v in scalar_outputs(output).items():
            if (self.keys is None and k not in ("lr", "skipped", "total")) or (self.keys is not None and k in self.keys):
                self.history[k].append((engine.state.iteration, v, *tail))
        if first and self._first > 1 and tail:  # a trainer that records phases: the earlier points need theirs too
            self._rule, self._unphased = _phase_rule(engine), True
            self._give_phases(resumed=True)
        if first and self._first == 1:  # a new run: the values of an earlier one must not outlive its first iteration
            self.write_values(engine, even_empty=True)

    def _check_files(self, engine: Engine | None = None) -> None:
        """Refuse, before the first iteration, a file of the user's where the curves go: a run replaces only the
        files it wrote (:mod:`unimiss_monai.data.output_ledger`). Curves in this handler's own format, which
        versions before the record wrote without recording them, are taken as this package's, with their picture if
        matplotlib drew it."""
        if engine is not None and getattr(engine.state, "rank", 0) != 0:  # only the writing rank checks and adopts
            return
        json_path = self.path.with_suffix(".json")
        earlier = is_curves_json(json_path)
        check_own_files([json_path], self.path.parent, written_earlier=earlier)
        # the picture by its own content too: a user's picture of that name beside curves of ours stays
        check_own_files([self.path], self.path.parent, written_earlier=earlier and drawn_by_matplotlib(self.path))

    def _earlier_history(self, iteration: int) -> defaultdict[str, list[tuple]]:
        """The values the run wrote before it was resumed at ``iteration`` (later ones were never checkpointed)."""
        history: defaultdict[str, list[tuple]] = defaultdict(list)
        path = self.path.with_suffix(".json")
        if not path.is_file():
            logger.warning("loss curves: no %s to continue; the curves of this resumed run start at iteration %d",
                           path, iteration)
            return history
        try:
            for k, values in json.loads(path.read_text()).items():
                kept = [(int(p[0]), float(p[1]), *p[2:3]) for p in values if int(p[0]) < iteration]
                if kept:  # a term recorded only after the resume point has no values from before it
                    history[str(k)] = kept
        except (OSError, ValueError, TypeError, AttributeError, IndexError) as err:
            logger.warning("loss curves: %s is unreadable (%s); the curves start at iteration %d", path, err, iteration)
            return defaultdict(list)
        last = max((p[0] for values in history.values() for p in values), default=0)
        if last < iteration - 1:  # written less often than checkpointed, or a save deferred to a whole step
            logger.warning("loss curves: no values for iterations %d-%d: the run was stopped before it wrote them",
                           last + 1, iteration - 1)
        return history

    def _give_phases(self, resumed: bool = False, last: bool = False) -> None:
        """Give the points written without a phase (by a version before it recorded them) the phase their terms show
        (:func:`phases_by_terms`), from the phases recorded so far; called again at each write until both phases
        are recorded. A point shown only by the marks it lacks (a term recorded in some iterations of a phase may be
        missing from others, e.g. in another stage of the intra-inter recipe) gets its phase only where the run's
        phase settings agree, and they are trusted only where they agree with every phase recorded or marked; once
        both phases are recorded (or at ``last``, the run's end), the points whose terms tell nothing get the
        settings' phase, logged as an assumption, where the settings are trusted and no term contradicts them."""
        unphased = sorted({p[0] for values in self.history.values() for p in values if len(p) == 2})
        shown = phases_by_terms(self.history) if unphased else {}
        marked = {i: phase for i, (phase, mark) in shown.items() if mark}
        known = {p[0]: p[2] for values in self.history.values() for p in values
                 if len(p) == 3 and p[0] < self._first} | marked
        wrong = next((i for i in sorted(known) if self._rule is not None and self._rule(i) != known[i]), None)
        if wrong is not None and (resumed or wrong in marked):
            logger.warning("loss curves: the run's phase settings (phase_mode, ct_epochs, xray_epochs, epoch length) "
                           "give iteration %d the %s phase where it was trained in the %s phase: they changed since "
                           "the run was started, and the resumed run's data follows the new ones", wrong,
                           self._rule(wrong), known[wrong])
        rule = self._rule if wrong is None else None
        found = marked | {i: phase for i, (phase, mark) in shown.items() if not mark and rule and rule(i) == phase}
        if found:
            self._stamp(found)
            logger.info("loss curves: %s, written without their phase, have the phase their terms show",
                        _span(sorted(found)))
        left = [i for i in unphased if i not in found]
        doubt = next((i for i in left if i in shown and rule and rule(i) != shown[i][0]), None)
        if doubt is not None:
            logger.warning("loss curves: the run's phase settings give iteration %d the %s phase where its terms, "
                           "lacking the marks of that phase, point to the %s phase: the settings may have changed "
                           "since the run was started (the resumed run's data follows the new ones), or that phase's "
                           "terms differ between its iterations", doubt, rule(doubt), shown[doubt][0])
            self._rule = None  # said once
        # with both phases recorded, more iterations can only take marks away, never single out another point
        decided = last or len({p[2] for values in self.history.values() for p in values if len(p) == 3}) > 1
        if decided and rule is not None and doubt is None:  # nothing contradicts the settings, nothing confirms them
            assumed = {i: rule(i) for i in left if i not in shown}
            if assumed:
                self._stamp(assumed)
                logger.warning("loss curves: %s in %s were written without their phase (by a version before it "
                               "recorded them) and their terms do not tell it: they are given the phase the run's "
                               "phase settings (phase_mode, ct_epochs, xray_epochs, epoch length) assign them. That "
                               "is an assumption, as the earlier run recorded no settings: if they changed since it "
                               "was started, these phases are wrong", _span(sorted(assumed)),
                               self.path.with_suffix(".json"))
                left = [i for i in left if i not in assumed]
        self._unphased = bool(left) and not decided
        if left and (decided or resumed):
            logger.log(logging.WARNING if decided else logging.INFO,
                       "loss curves: %s in %s were written without their phase (by a version before it recorded "
                       "them) and their terms do not tell it%s; they are drawn as 'phase not recorded'", _span(left),
                       self.path.with_suffix(".json"), "" if decided else
                       " yet (they may, once this run has recorded both phases)")

    def _stamp(self, phases: dict[int, str]) -> None:
        for k, values in self.history.items():
            self.history[k] = [(*p, phases[p[0]]) if len(p) == 2 and p[0] in phases else p for p in values]

    def write_values(self, engine: Engine | None = None, even_empty: bool = False) -> None:
        """Write the values recorded so far (rank 0), so a killed run's resume continues them."""
        if engine is not None and getattr(engine.state, "rank", 0) != 0 or not (self.history or even_empty):
            return
        if self._unphased:
            self._give_phases()
        with replacing_own(self.path.with_suffix(".json"), self.path.parent):
            save_json(self.history, self.path.with_suffix(".json"))

    def write(self, engine: Engine | None = None) -> None:
        if engine is not None and getattr(engine.state, "rank", 0) != 0 or not self.history:
            return
        if self._unphased:
            self._give_phases(last=True)
        from matplotlib.figure import Figure  # no pyplot: no global backend switch in the user's process

        monitors = [k for k in self.history if "entropy" in k or "norm" in k]
        losses = [k for k in self.history if k not in monitors]
        panels = [p for p in (losses, monitors) if p]
        blocks = phase_blocks(self.history)
        fig = Figure(figsize=(6 * len(panels), 4))
        axes = fig.subplots(1, len(panels), squeeze=False)
        phases = [b[2] for b in blocks]
        for ax, keys, title in zip(axes[0], panels, ("loss terms", "collapse monitors")):
            shade_phases(ax, blocks)
            for k, colour in zip(keys, _colours()):
                draw_phase_lines(ax, phase_lines(self.history[k]), self.smoothing, colour, phases, label=k)
            if keys is losses and all(p[1] > 0 for k in keys for p in self.history[k]):
                ax.set_yscale("log")
            ax.set_xlabel("iteration")
            apart = len({p for p in phases if p is not None}) > 1
            ax.set_title(title + (" (each phase its own line)" if apart else ""), fontsize=10)
            ax.legend(handles=ax.get_legend_handles_labels()[0] + phase_styles(phases), fontsize=7)
        fig.tight_layout()
        with replacing_own(self.path, self.path.parent), atomic_path(self.path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        self.write_values()


def phases_by_terms(history: Mapping[str, Sequence]) -> dict[int, tuple[str, bool]]:
    """The phase of each point of ``history`` ({term: [(iteration, value[, phase]), ...]}) written without one that
    its terms show: a term recorded in every iteration of one phase and in none of another's is that phase's mark (the
    terms summed into ``loss`` differ between the CT and X-ray phases), and an iteration whose terms carry the marks
    of one phase alone, and lack every other phase's, is of that phase; with it, whether the iteration has a mark
    (``False``: shown by the marks it lacks alone). Iterations the marks do not single out (the
    terms of both phases alike, or one phase not yet recorded) are left out. A mark is one only where the points
    without a phase have it too: a term the earlier version did not record (a newer one's) is absent from them all,
    whatever their phase."""
    terms: defaultdict[int, set[str]] = defaultdict(set)
    recorded: dict[int, str] = {}
    for k, values in history.items():
        for p in values:
            terms[p[0]].add(k)
            if len(p) == 3:
                recorded[p[0]] = p[2]
    phases = set(recorded.values())
    if len(phases) < 2:
        return {}
    marks = {}
    unphased = set(terms) - set(recorded)
    for k in {k for i in recorded for k in terms[i]} & {k for i in unphased for k in terms[i]}:
        having = {recorded[i] for i in recorded if k in terms[i]}
        lacking = {recorded[i] for i in recorded if k not in terms[i]}
        if len(having) == 1 and not having & lacking:
            marks[k] = next(iter(having))
    found = {}
    for i in unphased:
        fits = [ph for ph in phases if all((k in terms[i]) == (marks[k] == ph) for k in marks)]
        if marks and len(fits) == 1:
            found[i] = (fits[0], any(k in terms[i] for k in marks))
    return found


def _span(iterations: list[int]) -> str:
    return f"the values of {len(iterations)} iterations from {iterations[0]} to {iterations[-1]}"


def _phase_rule(engine: Engine) -> Callable[[int], str] | None:
    """The phase of each (1-based) iteration of ``engine``'s run, from its data's settings alone: a
    :class:`~unimiss_monai.data.loaders.PhaseLoader` alternates the phases by epoch or by iteration in the epoch
    (``phase_at``); ``None`` for data that is not alike, or whose epoch length is not the run's."""
    loader, length = getattr(engine.state, "dataloader", None), getattr(engine.state, "epoch_length", None)
    if not callable(getattr(loader, "phase_at", None)) or getattr(loader, "epoch_length", None) != length:
        return None
    return loader.phase_at


def _colours():
    """The default colour cycle, one colour per term, so a term's parts in every phase share one colour."""
    import matplotlib

    colours = matplotlib.rcParams["axes.prop_cycle"].by_key().get("color") or ["tab:blue"]
    while True:
        yield from colours


def is_curves_json(path: Path) -> bool:
    """Whether ``path`` holds loss curves as :class:`LossCurvePlotter` writes them: ``{term: [[iteration, value,
    phase], ...]}`` (or without the phase, as versions before it wrote them), every iteration a positive integer."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(
        isinstance(values, list) and all(isinstance(p, list) and len(p) in (2, 3) and type(p[0]) is int and p[0] > 0
                                         and isinstance(p[1], (int, float)) and all(isinstance(q, str) for q in p[2:])
                                         for p in values)
        for values in data.values())

