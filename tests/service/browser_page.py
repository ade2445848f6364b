"""A loopback web server for the browser test: a page that uses the official OpenAI JS SDK
(its ESM build, served from tools/browser/node_modules) and collects what the page reports."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SDK_DIR = Path(__file__).resolve().parents[2] / "tools" / "browser" / "node_modules" / "openai"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>chatservice sdk</title></head><body>
<script type="module">
const report = (result) => fetch("/result", {method: "POST", body: JSON.stringify(result)});
try {
  const {default: OpenAI, AuthenticationError} = await import("/openai/index.mjs");
  const options = {baseURL: %(api)s, dangerouslyAllowBrowser: true, maxRetries: 0};
  const client = new OpenAI({...options, apiKey: %(key)s});
  const completion = await client.chat.completions.create(
    {model: "echo", messages: [{role: "user", content: "hello from a browser"}]});
  let streamed = "";
  const stream = await client.chat.completions.create({model: "echo", stream: true,
    stream_options: {include_usage: true}, messages: [{role: "user", content: "streamed words"}]});
  for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
  const models = (await client.models.list()).data.map((m) => m.id);
  let wrongKey = null;
  try {
    await new OpenAI({...options, apiKey: "sk-wrong"}).models.list();
  } catch (error) {
    wrongKey = {status: error.status, code: error.code,
                sdkError: error instanceof AuthenticationError, requestId: error.requestID ?? null};
  }
  await report({completion: completion.choices[0].message.content, streamed, models, wrongKey});
} catch (error) {
  await report({failure: String(error && error.stack || error)});
}
</script></body></html>
"""


class PageServer:
    def __init__(self, port: int, api: str, key: str) -> None:
        self.result: dict[str, Any] | None = None
        self.reported = threading.Event()
        page = (PAGE % {"api": json.dumps(api), "key": json.dumps(key)}).encode()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/":
                    self._send(200, "text/html", page)
                    return
                relative = self.path.removeprefix("/openai/")
                file = (SDK_DIR / relative).resolve()
                if (
                    self.path.startswith("/openai/")
                    and file.is_relative_to(SDK_DIR)
                    and file.is_file()
                ):
                    self._send(200, "text/javascript", file.read_bytes())
                else:
                    self._send(404, "text/plain", b"not found")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                owner.result = json.loads(self.rfile.read(length))
                owner.reported.set()
                self._send(204, "text/plain", b"")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.origin = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
