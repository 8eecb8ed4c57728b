"""The examples in the convlstm.data docstrings run and give what they show."""
import doctest

import pytest

from convlstm.data import finite, mnist, readers, scalers, units, windows


@pytest.mark.parametrize("module", [finite, mnist, readers, scalers, units, windows],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module.__name__} has no docstring example to run"
    assert result.failed == 0
