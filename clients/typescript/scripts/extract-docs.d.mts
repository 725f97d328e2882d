export const DOC: string;
export function examples(text?: string): Array<{ name: string; run: boolean; code: string }>;
