"""The integrations import only when their framework does, and say how to get it otherwise."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module, blocked, extra", [
    ("lightning", ["lightning", "pytorch_lightning"], "backprop-lab[lightning]"),
    ("transformers", ["transformers"], "backprop-lab[transformers]"),
])
def test_an_integration_without_its_framework_names_the_extra(module, blocked, extra):
    code = (f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\n"
            f"try:\n    import backprop_lab.integrations.{module}\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert extra in out.stdout, out.stderr


def test_importing_backprop_lab_imports_no_framework():
    code = "import sys, backprop_lab, backprop_lab.integrations; print(sorted({'torch', 'lightning', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
