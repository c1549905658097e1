"""Config files with a YAML syntax error or a repeated key are named with the line of the error.

Snakemake reads the ``--configfile`` files before any workflow code runs, and its loader reports a
syntax error as "Config file is not valid JSON or YAML" without saying which file or where. `make
setup` runs ``python -m avemotion.config_errors install``, which puts a .pth file into the venv: when
Snakemake's loader module is imported, :func:`watch_snakemake` wraps its loader so that the same
error names the file, line and column. This module imports nothing heavy: the .pth runs it at every
start of the venv's Python.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import sysconfig
import types
from pathlib import Path

SNAKEMAKE_LOADER = "snakemake.common.configfile"
PTH_FILE = "avemotion_config_errors.pth"  # sorts after setuptools' __editable__ .pth, which makes avemotion importable


class ConfigFileError(ValueError):
    """A config file that is not valid YAML; the message names the file, line and column."""


def describe_yaml_error(path, error) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


def repeated_key(text: str) -> str | None:
    """Where a mapping in YAML ``text`` repeats a key ("line 9: datasets repeats the key of line 2"),
    or None: YAML loaders keep the last value and drop the first without a word (two ``datasets:``
    blocks lose the first block's corpora)."""
    import yaml

    found = []

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # <<: *anchor merges, it repeats nothing
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)):
                    continue
                if key in seen and not found:
                    found.append(f"line {key_node.start_mark.line + 1}: {key} repeats the key of line {seen[key]} (YAML keeps only the last; merge them)")
                seen.setdefault(key, key_node.start_mark.line + 1)
            return super().construct_mapping(node, deep)

    try:
        yaml.load(text, Loader)
    except yaml.YAMLError:
        return None  # a syntax error: the loader's own message says where
    return found[0] if found else None


def read_yaml(path) -> dict:
    """A YAML config file as a dict; a syntax error or a repeated key raises ConfigFileError naming
    file and line."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigFileError(f"config file {describe_yaml_error(path, error)}") from None
    repeated = repeated_key(text)
    if repeated:
        raise ConfigFileError(f"config file {path}, {repeated}")
    return loaded


def _from_snakemakes_loader(error: Exception) -> Exception:
    """``error`` as if Snakemake's own loader (the wrapper's caller) had raised it. Snakemake prints
    a WorkflowError's frames up to its own code: raised from the wrapper, the one-line message had
    this module's line under it, as if the config check had crashed."""
    caller = sys._getframe(2)  # this function, the wrapper, then Snakemake's load_configfile
    return error.with_traceback(types.TracebackType(None, caller, caller.f_lasti, caller.f_lineno))


def _with_yaml_location(module) -> None:
    """Wrap Snakemake's ``_load_configfile`` (``load_configfile`` calls it through the module)."""
    load = module._load_configfile

    def load_naming_the_line(configpath_or_obj, filetype="Config"):
        is_file = isinstance(configpath_or_obj, (str, Path)) and Path(configpath_or_obj).is_file()
        try:
            loaded = load(configpath_or_obj, filetype)
        except module.WorkflowError:
            if is_file:
                import yaml

                try:
                    yaml.safe_load(Path(configpath_or_obj).read_text(encoding="utf-8"))
                except yaml.YAMLError as error:
                    message = f"{filetype} file {describe_yaml_error(configpath_or_obj, error)}"
                    raise _from_snakemakes_loader(module.WorkflowError(message)) from None
            raise
        repeated = repeated_key(Path(configpath_or_obj).read_text(encoding="utf-8")) if is_file else None
        if repeated:
            raise _from_snakemakes_loader(module.WorkflowError(f"{filetype} file {configpath_or_obj}, {repeated}"))
        return loaded

    module._load_configfile = load_naming_the_line


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Finds Snakemake's loader module like the other finders, then wraps its loader after it ran."""

    def find_spec(self, name, path=None, target=None):
        if name != SNAKEMAKE_LOADER:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def execute_and_wrap(module):
                execute(module)
                _with_yaml_location(module)

            spec.loader.exec_module = execute_and_wrap
        return spec


def watch_snakemake() -> None:
    if SNAKEMAKE_LOADER in sys.modules:
        _with_yaml_location(sys.modules[SNAKEMAKE_LOADER])
    elif not any(isinstance(finder, _WrapOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _WrapOnImport())


def install() -> Path:
    """Write the .pth file into this interpreter's site-packages."""
    path = Path(sysconfig.get_paths()["purelib"]) / PTH_FILE
    path.write_text("import avemotion.config_errors; avemotion.config_errors.watch_snakemake()\n")
    return path


if __name__ == "__main__" and sys.argv[1:] == ["install"]:
    print(f"avemotion: installed {install()}")
