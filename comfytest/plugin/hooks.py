"""The pytest11 entry point: options, the ``comfy`` fixture, session state, reports.

Only glue: settings come from ``settings``, the server from ``session``, workflow items from
``collection``, and report documents from ``report``. Session state lives in the stash.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Generator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from comfytest.errors import ComfyTestError, NodePackImportError, ServerError
from comfytest.plugin.collection import WorkflowFile, is_collectable, model_keys
from comfytest.plugin.progress import ProgressDisplay
from comfytest.plugin.reporting import SessionState, failure_kind
from comfytest.plugin.rootguard import Setup, anchor, misplaced_root, writes_into
from comfytest.plugin.settings import OPTIONS, Option, Settings, join_dash_values, resolve
from comfytest.plugin.signals import SigtermAsInterrupt
from comfytest.workflows.modelorder import NodeidModels, group_name, ordered, shard_groups

STATE: pytest.StashKey[SessionState] = pytest.StashKey()
SIGTERM: pytest.StashKey[SigtermAsInterrupt] = pytest.StashKey()
EXIT_INFRASTRUCTURE = 75  # EX_TEMPFAIL: the server or the machine failed, not the code under test
EXIT_PACK_BROKEN = 1  # a custom node pack that does not import is the code under test failing


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("comfytest", "ComfyUI workflow regression tests (comfytest)")
    for opt in OPTIONS:
        _add(group, parser, opt)
    parser.addini("comfy_workflows", "folders whose JSON workflows are collected as tests", type="paths", default=[])
    _accept_flag_values(parser)


def _accept_flag_values(parser: pytest.Parser) -> None:
    """Let ``--comfy-launch-args --cpu`` parse as people type it (see ``join_dash_values``).

    pytest hands the same argument list to these two parser methods (every parse pytest makes
    after loading this plugin goes through one of them); no hook runs early enough to edit it.
    """
    for name in ("parse", "parse_known_and_unknown_args"):
        method = getattr(parser, name, None)
        if callable(method):
            setattr(parser, name, _joining(method))


def _joining(method: Any) -> Any:
    def parse(args: Any, *rest: Any, **kw: Any) -> Any:
        if isinstance(args, list):
            join_dash_values(args)
        return method(args, *rest, **kw)

    return parse


def _add(group: Any, parser: pytest.Parser, opt: Option) -> None:
    default = f" (default: {opt.default})" if opt.default not in (None, (), False) else ""
    env = f"; env {opt.env}" if opt.env else ""
    help_text = f"{opt.help}{default}; ini {opt.ini}{env}"
    if opt.flag:
        group.addoption(opt.cli, dest=opt.dest, action="store_true", default=False, help=help_text)
    elif opt.repeat:
        group.addoption(opt.cli, dest=opt.dest, action="append", type=opt.parse, default=[], help=help_text, metavar=metavar(opt))
    else:
        group.addoption(opt.cli, dest=opt.dest, type=opt.parse, default=None, help=help_text, metavar=metavar(opt))
    if opt.repeat:
        parser.addini(opt.ini, opt.help, type="linelist", default=[])
    else:
        parser.addini(opt.ini, opt.help, default="")


def metavar(opt: Option) -> str:
    """What the value looks like: URL, DIR, SECONDS, N, one|of|these."""
    name = getattr(opt.parse, "__name__", "")
    if name.startswith("one of "):
        return "{" + name.removeprefix("one of ").replace("|", ",") + "}"
    known = {"comfy_url": "URL", "gpu_list": "0,1", "shard": "i/N", "positive_float": "SECONDS", "int": "N",
             "positive_int": "N", "non_negative_int": "N", "non_negative_float": "X", "header": "'NAME: VALUE'",
             "split": "'ARGS'"}
    if name in known:
        return known[name]
    if opt.name == "profile":
        return "NAME"
    return "VAR" if opt.name.endswith("-env") else "PATH"


def pytest_configure(config: pytest.Config) -> None:
    for mark in ("comfy: a ComfyUI workflow test", "gpu: needs a GPU server", "slow: slow workflow"):
        config.addinivalue_line("markers", mark)
    base = anchor(config.inipath, config.invocation_params.dir)
    try:
        settings = resolve(lambda o: config.getoption(o.dest), lambda o: config.getini(o.ini), base)
    except ComfyTestError as exc:
        raise pytest.UsageError(str(exc)) from None
    refusal = root_refusal(config, settings)
    if refusal is not None:
        raise pytest.UsageError(refusal)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    try:
        state = SessionState(settings, worker, str(base))
    except ComfyTestError as exc:
        raise pytest.UsageError(str(exc)) from None
    state.full_run = covers_all_workflows(config)
    state.workflow_roots = tuple(Path(p).resolve() for p in config.getini("comfy_workflows"))
    explicit = config.args if config.args_source == pytest.Config.ArgsSource.ARGS else []
    state.collect_roots = state.workflow_roots + tuple(
        Path(config.invocation_params.dir, a.split("::")[0]).resolve() for a in explicit
    )
    state.deselected = narrowed(config)
    state.use_pool(getattr(config, "workerinput", {}).get("comfytest_servers"))
    config.stash[STATE] = state
    config.stash[SIGTERM] = SigtermAsInterrupt()
    config.stash[SIGTERM].install()
    config.pluginmanager.register(Reporter(state), "comfytest-reporter")


def root_refusal(config: pytest.Config, settings: Settings) -> str | None:
    """Why the rootdir or configuration pytest picked must not be used (``rootguard``)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return None  # the controller checked it, and hands its rootdir to the workers
    picked = Setup(config.rootpath, config.inipath)
    positional = [str(a) for a in (getattr(config.option, "file_or_dir", None) or [])]
    words = [*shlex.split(os.environ.get("PYTEST_ADDOPTS", "")), *map(str, config.invocation_params.args)]
    stray = [w for w in words if not w.startswith("-") and w not in positional
             and _exists(config.invocation_params.dir / Path(w).expanduser())]
    intended = None
    if stray:
        try:  # what the real positional args give: pytest's own (private) setup search
            from _pytest.config.findpaths import determine_setup

            root, ini, *_ = determine_setup(
                inifile=config.option.inifilename, override_ini=None, args=positional,
                rootdir_cmd_arg=config.option.rootdir or None, invocation_dir=config.invocation_params.dir)
            intended = Setup(root, ini)
        except (ImportError, TypeError, pytest.UsageError):  # another pytest: the other checks still apply
            intended = None
    message = misplaced_root(picked, intended, stray, settings.launch, settings.custom_nodes,
                             config.invocation_params.dir)
    return message or writes_into(settings.launch, [
        ("--comfy-results", settings.results), ("--comfy-baselines", settings.baselines),
        ("--comfy-history", settings.history)])


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long, or a word that is no path at all
        return False


def covers_all_workflows(config: pytest.Config) -> bool:
    """True when no paths were given, or one of them holds a whole ``comfy_workflows`` folder."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return True
    roots = [Path(p).resolve() for p in config.getini("comfy_workflows")]
    args = [Path(config.invocation_params.dir, a.split("::")[0]).resolve() for a in config.args]
    return any(arg == root or arg in root.parents for arg in args for root in roots)


def narrowed(config: pytest.Config) -> bool:
    """-k, -m, --lf or node ids: a partial run (decided here so the xdist controller knows)."""
    opt = config.option
    return bool(
        getattr(opt, "keyword", "") or getattr(opt, "markexpr", "") or getattr(opt, "lf", False)
        or any("::" in arg for arg in config.args)
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        state.close()
        del config.stash[STATE]
        config.pluginmanager.unregister(name="comfytest-reporter")
    sigterm = config.stash.get(SIGTERM, None)
    if sigterm is not None:  # after close(): a SIGTERM during clean-up must not orphan the server
        sigterm.restore()
        del config.stash[SIGTERM]


def state_of(config: pytest.Config) -> SessionState:
    return config.stash[STATE]


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A node pack under test (``--comfy-custom-nodes``, usually the repository root) is a plain
    folder to pytest: as a Package, pytest would import its ``__init__.py`` (which imports
    ComfyUI) before the first test under it."""
    state = parent.config.stash.get(STATE, None)
    if state is not None and path.resolve() in state.settings.custom_nodes and (path / "__init__.py").is_file():
        return pytest.Dir.from_parent(parent, path=path)
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> WorkflowFile | None:
    state = state_of(parent.config)
    if is_collectable(file_path, state.collect_roots):
        return WorkflowFile.from_parent(parent, path=file_path, state=state, open_session=session_or_exit)
    return None


@pytest.fixture(scope="session")
def comfy(request: pytest.FixtureRequest) -> Any:
    """The session's ComfyUI (connection + helpers): ``comfy.run(workflow, seed=..., patches=...)``."""
    return session_or_exit(request.config)


def session_or_exit(config: pytest.Config) -> Any:
    """The server session; if it cannot be had, stop the whole run with one clear error."""
    __tracebackhide__ = True
    state = state_of(config)
    try:
        return state.session()
    except NodePackImportError as exc:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            raise
        state.summary_notes.append("stopped: a custom node pack failed to import (see above)")
        pytest.exit(state.redact(str(exc)), returncode=EXIT_PACK_BROKEN)
    except ServerError as exc:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            raise  # pytest.exit in a worker is an xdist INTERNALERROR; the controller exits 75
        message = state.redact(str(exc))
    state.summary_notes.append("stopped: the ComfyUI server could not be used (see above)")
    pytest.exit(message, returncode=EXIT_INFRASTRUCTURE)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    state = state_of(item.config)
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, ComfyTestError):
        state.attach_log(excinfo.value)
        rep.longrepr = state.redact(str(excinfo.value))
        rep.comfy_failure_kind = failure_kind(excinfo.value)
    record = getattr(item, "comfy_record", None)
    if record is None or (rep.when != "call" and rep.passed):
        return
    if rep.when == "call" and rep.passed:
        _fail_as(rep, "timing", state.timing_failure(record))
    if rep.when == "call" and rep.passed:
        _fail_as(rep, "memory", state.memory_failure(record))
    message = str(rep.longrepr) if rep.longrepr is not None and not rep.passed else None
    if rep.skipped and isinstance(rep.longrepr, tuple):
        message = str(rep.longrepr[2])
    rep.comfy_record = state.finish_record(
        record, rep.outcome if rep.when == "call" else ("skipped" if rep.skipped else "error"),
        message, getattr(rep, "comfy_failure_kind", None), rep.duration,
    )
    if rep.when == "call":
        for name, value in state.junit_properties(rep.comfy_record):
            item.user_properties.append((name, value))
        pinned = state.pinned_summary(rep.comfy_record)
        if pinned:
            rep.sections.append(("comfytest: inputs as run", pinned))


def _fail_as(rep: pytest.TestReport, kind: str, reason: str | None) -> None:
    """A passing test failed by a session rule (--comfy-timing-fail: "timing", slower than in
    --comfy-compare; --comfy-memory-fail: "memory", its peak grew)."""
    if reason is not None:
        rep.outcome = "failed"
        rep.longrepr = reason
        rep.comfy_failure_kind = kind  # type: ignore[attr-defined]


class Reporter:
    """Receives every test report (on the xdist controller too) and writes the reports."""

    def __init__(self, state: SessionState) -> None:
        self.state = state

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        for observer in self.state.observers:
            if isinstance(observer, ProgressDisplay):
                observer.label = nodeid

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or not report.passed:
            kind = getattr(report, "comfy_failure_kind", None)
            self.state.add_report(report.nodeid, report.outcome, kind, getattr(report, "comfy_record", None))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            # the controller writes one merged report from the records it received; it never
            # talks to the server, so a worker hands over the fingerprint (pytest_testnodedown)
            output = getattr(session.config, "workeroutput", None)
            if output is not None and self.state.started is not None:
                output["comfytest_fingerprint"] = self.state.fingerprint()
                output["comfytest_dead"] = self.state.all_dead()
                output["comfytest_notes"] = list(self.state.started.pool.notes)  # e.g. no RSS behind a proxy
            return
        self.state.finish_session(self.state.unused_baselines())
        if exitstatus == pytest.ExitCode.TESTS_FAILED and self.state.only_infrastructure_failures():
            session.exitstatus = EXIT_INFRASTRUCTURE
        if self.state.report_error is not None and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR  # green without its reports would mislead

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist controller: the servers are started (or probed) once, here, for all workers."""
        if not node.config.option.collectonly:  # nothing runs: no server to start
            node.workerinput["comfytest_servers"] = self.state.pool_for_workers()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {})
        fingerprint = output.get("comfytest_fingerprint")
        if fingerprint and self.state.worker_fingerprint is None:
            self.state.worker_fingerprint = fingerprint
        self.state.dead_servers.extend(d for d in output.get("comfytest_dead", []) if d not in self.state.dead_servers)
        self.state.summary_notes.extend(n for n in output.get("comfytest_notes", []) if n not in self.state.summary_notes)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines = self.state.summary_lines()
        if lines:
            terminalreporter.section("comfytest")
            for line in lines:
                terminalreporter.write_line(line)


# --- live progress (--comfy-progress) ---------------------------------------------------------


def pytest_sessionstart(session: pytest.Session) -> None:
    state = state_of(session.config)
    display = progress_display(session.config, state.settings.progress)
    if display is not None:
        state.observers.append(display)


def progress_display(config: pytest.Config, mode: str) -> ProgressDisplay | None:
    """``auto``: an in-place line on a terminal, nothing otherwise; ``nodes``: a line per node.
    Never in an xdist worker (its output does not reach the terminal)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if mode == "off" or reporter is None or os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    tw = reporter._tw
    raw_file: Any = getattr(tw, "_file", None) or tw  # the writer's stream, past its column count
    if mode == "auto" and not getattr(reporter, "isatty", False):
        return None
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(text: str, raw: bool) -> None:
        with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            if raw:  # the in-place line must not move pytest's idea of the current column
                raw_file.write(text)
                raw_file.flush()
            else:
                tw.write(text, flush=True)

    return ProgressDisplay(write, "line" if mode == "auto" else "nodes",
                           column=lambda: int(tw.width_of_current_line), width=lambda: int(tw.fullwidth))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--comfy-shard keeps this job's share; --comfy-order models puts cases sharing models
    back to back (other tests keep their places)."""
    settings = state_of(config).settings
    keys = model_keys(items)
    if settings.shard is not None:
        index, count = settings.shard
        names = [group_name(item.nodeid, key) for item, key in zip(items, keys)]
        chosen = shard_groups({n: names.count(n) for n in dict.fromkeys(names)}, count)
        dropped = [item for item, name in zip(items, names) if chosen[name] != index]
        keys = [key for key, name in zip(keys, names) if chosen[name] == index]
        items[:] = [item for item, name in zip(items, names) if chosen[name] == index]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            state_of(config).deselected = True
    if settings.order == "models":
        items[:] = [items[i] for i in ordered(keys)]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under -n with the default --dist load: model groups as xdist work units (one worker
    loads each group's models once). An explicit --dist is the user's choice and stays."""
    if state_of(config).settings.order != "models" or config.getvalue("dist") != "load" or _dist_given(config):
        return None
    from comfytest.plugin.scheduling import ModelGroupScheduling  # needs xdist, which is running

    return ModelGroupScheduling(config, log, NodeidModels(config.rootpath))


def _dist_given(config: pytest.Config) -> bool:
    words = [*config.invocation_params.args, *os.environ.get("PYTEST_ADDOPTS", "").split(), *config.getini("addopts")]
    return any(str(w).startswith("--dist") for w in words)


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:  # a partial run: "unused baselines" would list the deselected tests' baselines
        state_of(items[0].config).deselected = True
