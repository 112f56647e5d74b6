"""``manage.py add_base NAME PATH``: checks the directory, registers it, says what it is."""

import io

import pytest
from django.core.management import CommandError, call_command

from rewards.models import BaseCheckpoint


def test_it_registers_a_base_and_prints_its_kind_size_and_image_size(db, blip_itm_dir):
    out = io.StringIO()

    call_command("add_base", "blip-tiny", str(blip_itm_dir), stdout=out)

    base = BaseCheckpoint.objects.get(name="blip-tiny")
    assert base.kind == "blip-itm" and base.path == str(blip_itm_dir)
    assert "blip-itm, 807.6 k parameters (807552), image size 64" in out.getvalue()


def test_it_refuses_the_wrong_kind_with_the_message_and_saves_nothing(db, captioning_dir):
    with pytest.raises(CommandError, match="BlipForConditionalGeneration") as refused:
        call_command("add_base", "captioner", str(captioning_dir), stdout=io.StringIO())

    assert str(refused.value).startswith("path: ")
    assert not BaseCheckpoint.objects.exists()


def test_a_taken_name_needs_replace_which_checks_again(db, blip_itm_dir):
    call_command("add_base", "blip", str(blip_itm_dir), stdout=io.StringIO())
    first = BaseCheckpoint.objects.get()

    with pytest.raises(CommandError, match="registered already"):
        call_command("add_base", "blip", str(blip_itm_dir), stdout=io.StringIO())
    call_command("add_base", "blip", str(blip_itm_dir), "--replace", stdout=io.StringIO())

    again = BaseCheckpoint.objects.get()
    assert again.pk == first.pk and again.checked_at > first.checked_at


def test_it_refuses_a_name_that_is_not_a_slug(db, blip_itm_dir):
    with pytest.raises(CommandError, match="name: .*letters, digits"):
        call_command("add_base", "my/blip", str(blip_itm_dir))
