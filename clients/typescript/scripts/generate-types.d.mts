export const OUTPUT: string;
export const OPENAPI: string;
export const CONTRACT: string;
export function tsType(schema: unknown, indent?: string): string;
export function generate(openapi: unknown, contract: unknown): string;
export function readSchema(): { openapi: unknown; contract: unknown };
