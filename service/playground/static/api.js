// The page's only way to the server: the public API (/models, /predict), with the key when there is one.

const KEY_STORE = "modelserve-api-key";

export const auth = {
  // sessionStorage: the key lives as long as the tab, not on disk across sessions.
  get key() { return sessionStorage.getItem(KEY_STORE) || ""; },
  set key(value) {
    if (value) sessionStorage.setItem(KEY_STORE, value);
    else sessionStorage.removeItem(KEY_STORE);
  },
};

// fetch, timed, with the key; never throws for an HTTP error: {ok, status, data, error, ms}.
export async function call(path, { method = "GET", body, headers = {} } = {}) {
  const sent = { ...headers };
  if (auth.key) sent["Authorization"] = `Bearer ${auth.key}`;
  const start = performance.now();
  let response;
  try {
    response = await fetch(path, { method, body, headers: sent, cache: "no-store" });
  } catch (e) {
    return { ok: false, status: 0, error: `the server did not answer (${e.message})`, ms: performance.now() - start };
  }
  const text = await response.text();
  const ms = performance.now() - start;
  let data = null;
  try { data = JSON.parse(text); } catch { /* not JSON: shown as text below */ }
  // The server's own message, as it wrote it: {"error": "..."}.
  const error = response.ok ? null
    : (data && typeof data.error === "string" ? data.error : text || response.statusText);
  return { ok: response.ok, status: response.status, data, error, ms, requestId: response.headers.get("X-Request-ID") };
}

// --- Reproducing a request: the curl command and the Python client call -------------------------------

export function shellQuote(s) {
  return "'" + String(s).replace(/'/g, "'\\''") + "'";
}

export function pyString(s) {
  // JSON string syntax is valid Python for every string (\uXXXX escapes included).
  return JSON.stringify(String(s));
}

// A request as kinds describe it: {path, body, headers, curl: [args], python: "ms.method(...)", file?}.
export function curlCommand(req) {
  const url = new URL(req.path, location.origin).href;
  const parts = ["curl"];
  if (auth.key) parts.push("-H", "\"Authorization: Bearer $MODELSERVE_API_KEY\"");
  parts.push(...req.curl, shellQuote(url));
  return parts.join(" ");
}

export function pythonCall(req) {
  const key = auth.key ? ', api_key=os.environ["MODELSERVE_API_KEY"]' : "";
  return [
    auth.key ? "import os\n\n" : "",
    "from service.client import ModelServeClient\n\n",
    `with ModelServeClient(${pyString(location.origin)}${key}) as ms:\n`,
    `    prediction = ${req.python}\n`,
    "    print(prediction.label, prediction.score)",
  ].join("");
}
