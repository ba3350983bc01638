"""hub/auth.py: the endpoint and the token, found in huggingface_hub's order."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetchshard.errors import HubError
from fetchshard.hub.auth import (
    DEFAULT_ENDPOINT,
    HubToken,
    find_token,
    hub_endpoint,
    token_path,
    token_source,
)


def test_endpoint() -> None:
    assert hub_endpoint({}) == DEFAULT_ENDPOINT == "https://huggingface.co"
    assert hub_endpoint({"HF_ENDPOINT": ""}) == DEFAULT_ENDPOINT
    assert hub_endpoint({"HF_ENDPOINT": "http://127.0.0.1:8080/"}) == "http://127.0.0.1:8080"
    assert hub_endpoint({"HF_ENDPOINT": "http://h:8080/hf//"}) == "http://h:8080/hf"
    for bad in ("huggingface.co", "ftp://h", "http://", "http://h/?x=1"):
        with pytest.raises(HubError, match="HF_ENDPOINT"):
            hub_endpoint({"HF_ENDPOINT": bad})


def _home(tmp_path: Path) -> dict[str, str]:
    """An environment whose home has no token file (nothing read from the real one)."""
    return {"HOME": str(tmp_path / "home")}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_order(tmp_path: Path) -> None:
    environ = _home(tmp_path)
    assert find_token(environ) is None and token_source(environ) is None
    _write(tmp_path / "home/.cache/huggingface/token", "hf_home\n")
    assert token_source(environ) == HubToken(
        "hf_home", f"the token file {tmp_path}/home/.cache/huggingface/token"
    )
    environ["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    assert find_token(environ) is None  # the file moved with XDG_CACHE_HOME
    _write(tmp_path / "xdg/huggingface/token", "hf_xdg")
    assert find_token(environ) == "hf_xdg"
    environ["HF_HOME"] = str(tmp_path / "hfhome")
    assert find_token(environ) is None
    _write(tmp_path / "hfhome/token", "hf_hfhome")
    assert find_token(environ) == "hf_hfhome"
    environ["HF_TOKEN_PATH"] = str(_write(tmp_path / "elsewhere/tok", " hf_path \r\n"))
    assert token_source(environ) == HubToken("hf_path", f"the token file {tmp_path}/elsewhere/tok")
    environ["HUGGING_FACE_HUB_TOKEN"] = "hf_legacy"
    assert token_source(environ) == HubToken("hf_legacy", "HUGGING_FACE_HUB_TOKEN")
    environ["HF_TOKEN"] = "hf_env"
    assert token_source(environ) == HubToken("hf_env", "HF_TOKEN")
    assert token_source(environ, "hf_flag") == HubToken("hf_flag", "the --token flag")
    assert token_source(environ, "hf_x", flag="hub.token") == HubToken("hf_x", "hub.token")
    assert find_token(environ, explicit="hf_flag") == "hf_flag"


def test_cleaning_and_empty(tmp_path: Path) -> None:
    environ = _home(tmp_path)
    assert find_token({**environ, "HF_TOKEN": "  hf_a\r\n"}) == "hf_a"
    assert find_token({**environ, "HF_TOKEN": "hf_\nb"}) == "hf_b"
    # an empty or blank one is no token: the next place is asked
    blank = {**environ, "HF_TOKEN": " \n", "HUGGING_FACE_HUB_TOKEN": "", "HF_TOKEN_PATH": ""}
    assert find_token(blank) is None
    assert find_token({**blank, "HUGGING_FACE_HUB_TOKEN": "hf_l"}) == "hf_l"
    assert find_token(blank, explicit=" ") is None
    _write(tmp_path / "home/.cache/huggingface/token", "\n\n")
    assert find_token(environ) is None


def test_implicit_tokens_disabled(tmp_path: Path) -> None:
    environ = {**_home(tmp_path), "HF_TOKEN": "hf_env"}
    _write(tmp_path / "home/.cache/huggingface/token", "hf_file")
    for value in ("1", "true", "YES", "on"):
        disabled = {**environ, "HF_HUB_DISABLE_IMPLICIT_TOKEN": value}
        assert find_token(disabled) is None
        assert find_token(disabled, explicit="hf_flag") == "hf_flag"
    for value in ("0", "", "false", "no"):
        assert find_token({**environ, "HF_HUB_DISABLE_IMPLICIT_TOKEN": value}) == "hf_env"


def test_token_path_expansion(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert token_path({"HOME": home}) == f"{home}/.cache/huggingface/token"
    assert token_path({"HOME": home, "HF_HOME": "~/hf"}) == f"{home}/hf/token"
    assert token_path({"HOME": home, "HF_HOME": "$BASE/hf", "BASE": "/b"}) == "/b/hf/token"
    assert token_path({"HOME": home, "HF_HOME": "${BASE}/hf", "BASE": "/b"}) == "/b/hf/token"
    assert token_path({"HOME": home, "HF_HOME": "$NOPE/hf"}) == "$NOPE/hf/token"
    assert token_path({"HOME": home, "HF_TOKEN_PATH": "~/t", "HF_HOME": "/x"}) == f"{home}/t"
    assert token_path({"HOME": home, "XDG_CACHE_HOME": "/c"}) == "/c/huggingface/token"
    assert token_path({"HOME": home, "XDG_CACHE_HOME": ""}) == f"{home}/.cache/huggingface/token"


def test_unreadable_token_file(tmp_path: Path) -> None:
    folder = tmp_path / "tokendir"
    folder.mkdir()
    with pytest.raises(HubError, match="cannot read the Hugging Face token file") as info:
        find_token({**_home(tmp_path), "HF_TOKEN_PATH": str(folder)})
    assert str(folder) in str(info.value)
    # a missing file, or a HF_HOME that is a file, is no token
    assert find_token({**_home(tmp_path), "HF_HOME": str(_write(tmp_path / "f", "x"))}) is None


def test_token_never_shown() -> None:
    token = HubToken("hf_secret_value", "HF_TOKEN")
    assert "hf_secret" not in repr(token) and "hf_secret" not in str(token)
    assert str(token) == "token from HF_TOKEN"
