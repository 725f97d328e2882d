export const REPO: string;
export function python(): string;
export function cleanEnv(extra?: Record<string, string>): Record<string, string>;
export function serverContract(): Promise<{ openapi: unknown; contract: { errors: Record<string, number>; statuses: string[] } }>;
export function stable(value: unknown): string;
