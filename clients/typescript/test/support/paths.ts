// Where things are when the compiled tests run (from build/test/support/).
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** This package's directory (clients/typescript). */
export const PACKAGE = fileURLToPath(new URL("../../../", import.meta.url));

export type ContractScript = typeof import("../../scripts/contract.mjs");
export type GenerateScript = typeof import("../../scripts/generate-types.mjs");

/** A module of scripts/, loaded by absolute path (the compiled tests live elsewhere). */
export async function script<T>(name: string): Promise<T> {
  return (await import(pathToFileURL(join(PACKAGE, "scripts", name)).href)) as T;
}
