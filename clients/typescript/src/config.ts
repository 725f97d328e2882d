// Where the client finds the server and its key: the same variables, and the same order,
// as the Python SDK (faramesh.config.client_url / client_key).

export const DEFAULT_URL = "http://127.0.0.1:8000";

type Env = Record<string, string | undefined>;

/** FARAMESH_URL, else FARAMESH_BASE_URL (the published faramesh-sdk's name), else the default. */
export function clientUrl(env: Env = process.env): string {
  return (env.FARAMESH_URL || env.FARAMESH_BASE_URL || DEFAULT_URL).replace(/\/+$/, "");
}

/** FARAMESH_API_KEY, else FARAMESH_TOKEN (the published faramesh-sdk's name), else none. */
export function clientKey(env: Env = process.env): string | undefined {
  return env.FARAMESH_API_KEY || env.FARAMESH_TOKEN || undefined;
}
