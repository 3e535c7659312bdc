"""``python -m unimiss_monai <command>``: options the command does not take are refused before it runs (fire would run
it with its defaults first and complain afterwards)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unimiss_monai.cli import main, read_options, with_boolean_options, with_path_errors

REPO = Path(__file__).resolve().parents[1]


def samples(out: str = "samples", synthetic: bool = False, only: str | None = None, overwrite: bool = False) -> str:
    return out


def _exit(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as err:
        main(args)
    return err.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--outt", "X"], "unimiss_monai samples: unknown option --outt; did you mean --out?"),
    (["--outt=X"], "unimiss_monai samples: unknown option --outt; did you mean --out?"),
    (["--synthetic", "--overwrit"], "unimiss_monai samples: unknown option --overwrit; did you mean --overwrite?"),
    (["--zzz", "1"], "unimiss_monai samples: unknown option --zzz; it takes --out, --synthetic, --only, --overwrite"),
    (["-o", "X"], "unimiss_monai samples: option -o is ambiguous: --out, --only, --overwrite"),
    (["a", "true", "x", "false", "extra"], "unimiss_monai samples: unexpected argument 'extra'"),
    (["--out", "a", "b", "c", "d", "e"], "unimiss_monai samples: unexpected argument 'e'"),
])
def test_refused(args, message):
    assert read_options("samples", samples, args)[0] == message


@pytest.mark.parametrize("args", [
    [], ["--out", "X"], ["--out=X"], ["X"], ["--synthetic"],
    ["--nosynthetic"], ["--synthetic", "false", "--only", "[ct_segmentation]"], ["-s"], ["X", "--only", "a", "--", "--verbose"],
    ["--help"], ["--out", "X", "--help"], ["--out", "-5"], ["--out", "X", "--", "--zzz"],
])
def test_accepted(args):
    assert read_options("samples", samples, args)[0] is None


def test_keyword_catch_all_takes_anything():
    def bench(bundle: str = "x", **overrides):
        return overrides

    assert read_options("label-efficiency", bench, ["--learning_rate", "1e-3", "--anything"])[0] is None


def test_typo_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = _exit(["samples", "--outt", str(tmp_path / "X")], capsys)
    assert code == 2 and err == "unimiss_monai samples: unknown option --outt; did you mean --out?\n"
    assert list(tmp_path.iterdir()) == []  # neither X nor the default "samples" folder


def test_help_anywhere_shows_help_without_running(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = _exit(["samples", "--out", str(tmp_path / "X"), "--help"], capsys)
    assert code == 0 and list(tmp_path.iterdir()) == []
    # the help itself, without fire's line quoting the command name twice (a command no shell can paste)
    assert "SYNOPSIS" in err and "Showing help with the command" not in err, err


def test_typo_through_python_m(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "unimiss_monai", "samples", "--outt", "X"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and proc.stderr == "unimiss_monai samples: unknown option --outt; did you mean --out?\n"
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []


def test_version_is_the_one_the_bundles_require(capsys):
    import json

    from unimiss_monai import __version__

    main(["--version"])
    required = json.loads((REPO / "bundles" / "unimiss_pretraining" / "configs" / "metadata.json").read_text())
    assert capsys.readouterr().out == f"unimiss_monai {required['required_packages_version']['unimiss_monai']}\n"
    main(["-V"])
    assert capsys.readouterr().out == f"unimiss_monai {__version__}\n"


def _flags(synthetic: bool = False, progress: bool = True, force: bool | str = False, n: int = 1,
           mode: str | bool = "auto"):
    return {"synthetic": synthetic, "progress": progress, "force": force, "n": n, "mode": mode}


@pytest.mark.parametrize("args, expected", [
    (["--synthetic", "false"], {"synthetic": False}),
    (["--synthetic", "YES", "--progress", "0"], {"synthetic": True, "progress": False}),
    (["--synthetic=True", "--progress=no"], {"synthetic": True, "progress": False}),
    (["--synthetic"], {"synthetic": True}),
    (["--noprogress"], {"progress": False}),
    (["--force", "yes"], {"force": True}),  # a boolean a Python caller may also give as text
    (["--mode", "later"], {"mode": "later"}),  # not a boolean option (its default is text): the command reads it
    (["--n", "0"], {"n": 0}),
])
def test_boolean_options_are_read_as_booleans(args, expected):
    """fire alone would pass "false" on as a string, which Python counts as true."""
    import fire

    assert fire.Fire(with_boolean_options("x", _flags), command=args) == {**_flags(), **expected}


def test_a_boolean_option_that_is_not_one_stops_the_command(tmp_path, monkeypatch, capsys):
    """A usage error: exit status 2, as for an unknown option, and one line on stderr."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as err:
        main(["samples", "--synthetic", "maybe", "--out", str(tmp_path / "X")])
    assert err.value.code == 2
    assert capsys.readouterr().err == ("unimiss_monai samples: --synthetic is 'maybe', not a boolean; use true/false, "
                                       "yes/no or 1/0, or --synthetic / --nosynthetic\n")
    assert list(tmp_path.iterdir()) == []


def test_a_boolean_option_also_typed_str_is_named_as_an_option(capsys):
    """``publish-pretrained --force maybe`` (``force: bool | str``) is refused as the option it is, not as a bundle's
    "config id 'force'"."""
    with pytest.raises(SystemExit) as err:
        main(["publish-pretrained", "absent.pt", "--force", "maybe"])
    assert err.value.code == 2
    assert capsys.readouterr().err == ("unimiss_monai publish-pretrained: --force is 'maybe', not a boolean; use "
                                       "true/false, yes/no or 1/0, or --force / --noforce\n")


@pytest.mark.parametrize("out, where", [("afile", ""), ("afile/sub", ": {tmp}/afile")])
def test_an_output_folder_that_is_a_file_is_named_with_its_option(tmp_path, monkeypatch, out, where):
    """``Path.mkdir`` said "[Errno 17] File exists: 'afile'" (or "Not a directory" with a traceback)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(FileExistsError) as err:
        main(["samples", "--out", out, "--only", "pretraining"])
    assert str(err.value) == (f"samples: --out {out}{where.format(tmp=tmp_path)} is a file, not a folder; move that "
                              "file away or choose another --out")
    assert [p.name for p in tmp_path.iterdir()] == ["afile"] and (tmp_path / "afile").read_text() == "keep"


def test_a_folder_given_for_a_file_is_named_with_its_option(tmp_path):
    def read(path: str = "x", other: str = "y"):
        return open(path).read()

    with pytest.raises(FileExistsError, match=f"^cmd: --path {tmp_path} is a folder, not a file: give the path of a file"):
        with_path_errors("cmd", read)(str(tmp_path))
    with pytest.raises(FileNotFoundError):  # any other error stays as it was
        with_path_errors("cmd", read)(str(tmp_path / "absent"))


def test_text_options_reach_the_command_as_typed(monkeypatch):
    """fire reads ``--version 0.10`` as the float 0.1 (another release); options declared ``str`` get the text."""
    import unimiss_monai.release.download as download_module

    seen = []

    def fake_download(name: str, version: str | None = None, index: str | None = None, timeout: float = 60.0):
        seen.append((name, version, index, timeout))

    monkeypatch.setattr(download_module, "download", fake_download)
    main(["download", "unimiss_pretraining", "--version", "0.10", "--timeout", "5"])
    main(["download", "unimiss_pretraining", "--version=1.10", "--index", "007"])
    main(["download", "unimiss_pretraining"])
    main(["download", "unimiss_pretraining", "-v", "2.20", "-t", "5"])  # the short form
    main(["download", "1.10", "0.10"])  # by position
    assert seen == [("unimiss_pretraining", "0.10", None, 5), ("unimiss_pretraining", "1.10", "007", 60.0),
                    ("unimiss_pretraining", None, None, 60.0), ("unimiss_pretraining", "2.20", None, 5),
                    ("1.10", "0.10", None, 60.0)]


def test_path_options_reach_the_command_as_typed(monkeypatch):
    """A folder or file named like a number (``report 2024``, ``--out 1.10``) is a path, not the number fire reads; a
    leading ``~`` is the home folder."""
    import os

    import unimiss_monai.report as report_module

    seen = []

    def fake_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                    samples: str | os.PathLike | None = None):
        seen.append((run_dir, out, samples))

    monkeypatch.setattr(report_module, "report", fake_report)
    monkeypatch.setenv("HOME", "/home/reader")
    main(["report", "2024"])
    main(["report", "runs/a", "--out", "1.10", "--samples", "007"])
    # a quoted ~ (or --out=~/x) reaches Python as typed: the home folder, as the shell would have made it, not a
    # folder named "~" in the working folder
    main(["report", "~/runs/a", "--out=~/pages", "--samples", "~"])
    assert seen == [("2024", None, None), ("runs/a", "1.10", "007"),
                    ("/home/reader/runs/a", "/home/reader/pages", "/home/reader")]


def test_text_with_a_hash_reaches_the_command_whole(monkeypatch):
    """fire reads ``a#b`` as Python, where ``#`` starts a comment: the option would get ``a``. The text typed is what a
    ``str`` option gets; quotes typed for fire (``'"0.10"'``) still only say "a string"."""
    import unimiss_monai.release.download as download_module

    seen = []

    def fake_download(name: str, version: str | None = None, index: str | None = None):
        seen.append((name, version, index))

    monkeypatch.setattr(download_module, "download", fake_download)
    main(["download", "run#2", "--index", "https://host/dist/model_info.json#main"])
    main(["download", "x", "--version", '"0.10"', "--index", "'007'"])
    main(["download", "x", "--version", "None"])
    assert seen == [("run#2", None, "https://host/dist/model_info.json#main"), ("x", "0.10", "007"), ("x", None, None)]


@pytest.mark.parametrize("args", [["report", "run", "--out"], ["report", "run", "--out", "--samples", "s"],
                                  ["publish-pretrained", "absent.pt", "--dst"],
                                  ["official-datalist", "root", "x.json", "--list_3d"], ["download", "x", "--index"],
                                  ["bench-drr", "--threads", "--overwrite"]])  # a number: True counted as 1 thread
def test_a_text_option_without_its_value_is_a_usage_error_naming_it(args, capsys, tmp_path, monkeypatch):
    """fire hands a bare ``--out`` in as ``True``, which ended in a traceback about a bool where a path belongs."""
    monkeypatch.chdir(tmp_path)
    code, err = _exit(args, capsys)
    option = next(a for a in args if a.startswith("--") and a != "--samples")
    assert code == 2
    assert err == f"unimiss_monai {args[0]}: option {option} needs a value ({option} VALUE); was it left out?\n"
    assert list(tmp_path.iterdir()) == []


def test_unknown_command_is_a_usage_error(capsys):
    """Like an unknown option (and fire's own usage errors): exit status 2 and one line on stderr."""
    code, err = _exit(["pakage-bundle", "bundles/x"], capsys)
    assert code == 2
    assert err.startswith("unimiss_monai: unknown command 'pakage-bundle'; did you mean package-bundle? Commands: ")
    assert err.count("\n") == 1


def test_top_level_help_says_what_each_command_does_without_importing_it():
    code = ("import sys; from unimiss_monai.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('unimiss_monai.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "PAGER": "cat"})
    from unimiss_monai.cli import COMMANDS, SUMMARIES

    assert list(SUMMARIES) == list(COMMANDS)
    listed = [line.strip() for line in proc.stderr.splitlines()]  # fire's help, to stderr when not on a terminal
    for name, summary in SUMMARIES.items():
        assert listed[listed.index(name) + 1] == f"{summary} (options: python -m unimiss_monai {name} --help)"
    assert [n for n in listed if n in COMMANDS] == list(COMMANDS)  # in the order of the table
    imported = proc.stdout
    assert "unimiss_monai.cli" in imported and not any(COMMANDS[n].split(":")[0] in imported for n in COMMANDS)


def test_a_command_that_prints_its_summary_is_not_followed_by_a_dump_of_its_result(monkeypatch, capsys):
    """The mapping a command returns is for Python callers; fire would print it again as ``key: value`` lines."""
    from unimiss_monai.release import package as package_module

    def fake_package_bundle(bundle: str, out: str = "dist") -> dict:
        print(f"package-bundle: {bundle} -> {out}")
        return {"zip": f"{out}/x.zip", "sha256": "0" * 64}

    monkeypatch.setattr(package_module, "package_bundle", fake_package_bundle)
    main(["package-bundle", "bundles/x", "--out", "d"])
    assert capsys.readouterr().out == "package-bundle: bundles/x -> d\n"


def test_a_warning_of_the_package_is_one_line_and_said_once(tmp_path):
    """The synthetic fallback of ``samples``: once (not also as a log line), without the source line under it."""
    code = ("import sys\nfrom unimiss_monai.data import locators\nlocators.find_real_ct = lambda: None\n"
            "from unimiss_monai.cli import main\nmain(sys.argv[1:])")
    proc = subprocess.run([sys.executable, "-c", code, "samples", "--out", str(tmp_path), "--only", "ct_segmentation"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    from unimiss_monai.data.locators import INSTALL_HINT

    said = [line for line in lines if "real chest CT not installed" in line]
    assert said == [f"warning: real chest CT not installed; ct_segmentation uses a synthetic phantom instead (install "
                    f"it with `{INSTALL_HINT}`)"], lines
    assert proc.stdout.splitlines()[-1] == str(tmp_path)  # a command's str result is still its last line


def test_a_warning_of_a_pseudo_file_keeps_pythons_form_when_the_working_folder_is_gone(tmp_path, monkeypatch):
    from unimiss_monai import cli
    from unimiss_monai.cli import _one_line_warning

    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # "<string>" resolves against the working folder, which no longer exists
    # the format in place before (Python's, or one a library such as ITK installed when imported first)
    monkeypatch.setattr(cli, "_PYTHON_WARNING_FORMAT", lambda message, category, filename, lineno, line=None:
                        f"{filename}:{lineno}: {category.__name__}: {message}\n")
    assert _one_line_warning("odd", UserWarning, "<string>", 1) == "<string>:1: UserWarning: odd\n"
    ours = str(REPO / "unimiss_monai" / "data" / "locators.py")
    assert _one_line_warning("fallback", UserWarning, ours, 60) == "warning: fallback\n"


README_REFUSALS = [["samples", "--outt", "X"], ["samples", "--overwrite", "maybe"]]


@pytest.mark.parametrize("args", README_REFUSALS)
def test_the_refusals_the_readme_quotes_are_what_the_command_prints(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = _exit(args, capsys)
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())  # a quote may wrap across lines
    assert code == 2 and f"`{err.strip()}`" in readme, err
    assert list(tmp_path.iterdir()) == []


def test_every_refusal_the_readme_quotes_is_checked(tmp_path, monkeypatch, capsys):
    """A new quote of a refusal in the README gets its command line in README_REFUSALS, so the check above runs it."""
    monkeypatch.chdir(tmp_path)
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    quoted = set(re.findall(r"`(unimiss_monai [a-z-]+: [^`]+)`", readme))
    printed = set()
    for args in README_REFUSALS:
        printed.add(_exit(args, capsys)[1].strip())
    assert quoted == printed
