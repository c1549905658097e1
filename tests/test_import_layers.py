"""avemotion's imports run one way: a module imports only from its own layer or the ones below.

Layers, lowest first: core (plain config, labels, files, metrics), data (corpora, media, faces,
preprocessing, fused shards), model (the Keras networks), train, evaluate (and inference, which
needs the model and the data only), cli. The source is parsed, not imported, so every import counts:
those inside functions too (moving an import into a function hides a loop, it does not remove it).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "avemotion"

LAYERS = ("core", "data", "model", "train", "evaluate", "cli")
# Module (or package) -> layer; a module takes the entry of its longest matching prefix.
LAYER_OF = {
    "avemotion": "core",  # the package's __init__ (its version)
    "avemotion.io": "core",
    "avemotion.labels": "core",
    "avemotion.logs": "core",
    "avemotion.quarantine": "core",
    "avemotion.config": "core",
    "avemotion.config_errors": "core",
    "avemotion.config_checks": "core",
    "avemotion.job_params": "core",
    "avemotion.envs": "core",
    "avemotion.recipes": "core",
    "avemotion.metrics": "core",
    "avemotion.presets": "core",
    "avemotion.layout": "core",
    "avemotion.gpus": "core",
    "avemotion.scratch": "core",
    "avemotion.datasets": "data",
    "avemotion.media": "data",
    "avemotion.face": "data",
    "avemotion.preprocess": "data",
    "avemotion.fusion": "data",
    "avemotion.demo": "data",
    "avemotion.model": "model",
    "avemotion.train": "train",
    "avemotion.evaluate": "evaluate",
    "avemotion.inference": "evaluate",
    "avemotion.cli": "cli",
}

# Modules that may import from fewer layers than their own allows: predicting new clips runs a
# trained model over prepared clips, so inference, and the command line that runs it, must work
# without the training code.
ONLY_FROM = {"avemotion.inference": ("core", "data", "model"), "avemotion.cli": ("core", "data", "model", "evaluate")}

# Imports of avemotion modules inside functions, (importer, imported) -> why. Only a heavy import
# (TensorFlow, Keras) that light importers of the module must not pay is a reason.
LAZY_IMPORTS = {
    ("avemotion.train.backend", "avemotion.train.compilation_cache"): "JAX: a job on TensorFlow, and the workflow while it plans jobs, must not import it",
    ("avemotion.cli", "avemotion.model.weights"): "Keras: the commands other than convert-weights start without TensorFlow",
    ("avemotion.cli", "avemotion.model.whisper_weights"): "Keras: the commands other than convert-weights start without TensorFlow",
    ("avemotion.inference", "avemotion.model.outputs"): "TensorFlow: the workflow imports inference when it parses its rules",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str | None:
    prefixes = [prefix for prefix in LAYER_OF if module == prefix or module.startswith(prefix + ".")]
    return LAYER_OF[max(prefixes, key=len)] if prefixes else None


def imports_of(path: Path, source: str | None = None, module: str | None = None) -> list[tuple[str, int, bool]]:
    """(imported avemotion module, line, inside a function) of every import statement in ``path``
    (``source`` and ``module``: its text and module name, read from the file when not given)."""
    tree = ast.parse(source if source is not None else path.read_text(), filename=str(path))
    own = (module or module_name(path)).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    found = []

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = package[: len(package) - child.level + 1] if child.level else []
                module = ".".join(base + ([child.module] if child.module else []))
                # `from avemotion.evaluate import plots` imports the module avemotion.evaluate.plots
                names = [f"{module}.{alias.name}" if is_module(f"{module}.{alias.name}") else module for alias in child.names]
            elif isinstance(child, ast.Call) and is_dynamic_import(child):
                names = [child.args[0].value]
            found.extend((name, child.lineno, in_function) for name in dict.fromkeys(names) if name.split(".")[0] == "avemotion")
            visit(child, inside)

    visit(tree, False)
    return found


def is_dynamic_import(call: ast.Call) -> bool:
    """importlib.import_module("avemotion...") or __import__("avemotion...") with a literal name."""
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
    literal = call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)
    return name in ("import_module", "__import__") and bool(literal)


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    unplaced = [module_name(path) for path in sources() if layer(module_name(path)) is None]
    assert not unplaced, f"add these modules to LAYER_OF: {unplaced}"


def allowed_layers(module: str) -> tuple[str, ...]:
    return ONLY_FROM.get(module, LAYERS[: LAYERS.index(layer(module)) + 1])


def test_no_module_imports_from_a_higher_layer():
    violations = []
    for path in sources():
        importer = module_name(path)
        for imported, line, _ in imports_of(path):
            if layer(imported) not in allowed_layers(importer):
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {importer} ({layer(importer)}) imports {imported} ({layer(imported)})")
    assert not violations, "imports that go up a layer (or outside ONLY_FROM):\n" + "\n".join(violations)


def test_avemotion_imports_are_at_module_top():
    lazy, used = [], set()
    for path in sources():
        importer = module_name(path)
        for imported, line, in_function in imports_of(path):
            if not in_function:
                continue
            if (importer, imported) in LAZY_IMPORTS:
                used.add((importer, imported))
            else:
                lazy.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {importer} imports {imported} inside a function")
    assert not lazy, "move these imports to the module's top (or allow them in LAZY_IMPORTS, with the reason):\n" + "\n".join(lazy)
    assert used == set(LAZY_IMPORTS), f"LAZY_IMPORTS entries with no such import left: {sorted(set(LAZY_IMPORTS) - used)}"


def test_the_scan_sees_relative_and_function_level_imports():
    """A blind scan would pass anything: check that it finds what the tests above rely on."""
    source = (
        "import avemotion.io\n\ndef f():\n    from ..train import experiment, splits\n    from . import plots\n"
        "    importlib.import_module('avemotion.cli')\n"
    )
    found = imports_of(PACKAGE / "evaluate" / "sample.py", source, "avemotion.evaluate.sample")
    assert found == [
        ("avemotion.io", 1, False),
        ("avemotion.train.experiment", 4, True),
        ("avemotion.train.splits", 4, True),
        ("avemotion.evaluate.plots", 5, True),
        ("avemotion.cli", 6, True),
    ]
    assert layer("avemotion.fusion.shards") == "data" and layer("avemotion.inference") == "evaluate"


def test_the_predict_job_needs_no_training_code():
    """The workflow's predict_clips job, like `avemotion predict`, runs where only the model and data
    code are installed: its adapter imports inference and what inference may import, nothing else."""
    adapter = PACKAGE.parent / "workflow_scripts" / "predict_clips.py"
    imported = [name for name, _, _ in imports_of(adapter, module="workflow_scripts.predict_clips")]
    assert "avemotion.inference" in imported
    beyond = [name for name in imported if name != "avemotion.inference" and layer(name) not in ONLY_FROM["avemotion.inference"]]
    assert not beyond, f"workflow_scripts/predict_clips.py imports {beyond}"
