"""The one name pattern (gloss_gen/core/names.py) and where it is enforced outside the server."""

from __future__ import annotations

import pytest

from gloss_gen.core.names import InvalidNameError, is_valid_name, validate_name
from gloss_gen.data.classsets import ClassSetError, load_class_set, validate_class_set_name

GOOD = ["imagenet1k", "cifar10", "a", "pets_v2.1", "0f" * 16, "A-b_c.d", "x" * 64]
BAD = ["", "..", ".", ".hidden", "-x", "a/b", "a\\b", "a:b", "a\0b", "a b", "a\n", "x" * 65, "é", "x" * 100_000,
       None, 7, ["a"]]


@pytest.mark.parametrize("value", GOOD)
def test_good_names_pass(value):
    assert is_valid_name(value) and validate_name(value) == value and validate_class_set_name(value) == value


@pytest.mark.parametrize("value", BAD, ids=lambda v: repr(v)[:12])
def test_bad_names_are_refused_in_one_short_line(value):
    assert not is_valid_name(value)
    with pytest.raises(InvalidNameError) as err:
        validate_name(value, "job id")
    assert err.value.code == "invalid_name" and "job id" in err.value.message
    assert "\n" not in err.value.message.replace("\\n", "") and len(err.value.message) < 200
    with pytest.raises(ClassSetError):
        validate_class_set_name(value)


def test_a_class_set_file_whose_name_is_not_a_valid_name_is_refused(tmp_path):
    path = tmp_path / "my pets.txt"
    path.write_text("cat\ndog\n")
    with pytest.raises(ClassSetError) as err:
        load_class_set(path)
    assert "my pets.txt" in err.value.message and "letters, digits" in err.value.message
