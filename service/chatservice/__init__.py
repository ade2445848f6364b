"""ChatService: an OpenAI-compatible chat-completions service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chatservice")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
