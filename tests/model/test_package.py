"""The ``model`` package's surface: its public names load lazily, so torch-free callers stay torch-free."""

from __future__ import annotations

import os
import subprocess
import sys

import model


def test_every_public_name_resolves_from_its_module() -> None:
    assert sorted(model.__all__) == sorted(model._EXPORTS)
    for name in model.__all__:
        assert getattr(model, name) is getattr(sys.modules[model._EXPORTS[name]], name), name


def test_importing_the_package_and_its_light_modules_does_not_import_torch() -> None:
    code = "import sys, model, model.images, model.options, model.weights; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, env=dict(os.environ)
    )
    assert done.stdout.strip() == "False", done.stderr
