// Run a function only when Faramesh allows it, and report what happened.
//
//   const refund = govern(async ({ amount, customerId }) => payments.refund(customerId, amount),
//                         { tool: "refund", operation: "process" });
//   await refund({ amount: 150, customerId: "cus_42" });
//
// Each call submits the action with the function's argument as `params`, waits for a person
// when the policy asks for approval, runs the function only when the action is `allowed` or
// `approved` (with the params the approver settled on), and reports the return value or the
// exception. Otherwise it throws ActionDenied or ApprovalTimeout and the function never runs.

import { Gate, type GateOptions } from "./gate.js";
import type { JsonObject } from "./types.js";

export interface GovernOptions<A extends unknown[]> extends Omit<GateOptions, "tool"> {
  /** Faramesh tool name (default: the function's name). */
  tool?: string;
  /** Aborting it abandons every call still waiting for a decision (see `onAbandon`). */
  signal?: AbortSignal;
  /**
   * The params for a call's arguments. Default: a function of one plain-object argument (or
   * none) sends that object; other signatures need `toParams` (and `fromParams`).
   */
  toParams?: (...args: A) => JsonObject;
  /** The arguments for params an approver edited (default: the params as the one argument). */
  fromParams?: (params: JsonObject, args: A) => A;
}

/** A governed function: every call goes through Faramesh; `gate` is its Gate. */
export type Governed<A extends unknown[], R> = ((...args: A) => Promise<Awaited<R>>) & { readonly gate: Gate };

function isPlainObject(value: unknown): value is JsonObject {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Wrap `fn` so that each call is governed by Faramesh. The wrapper always returns a promise.
 * Throws ActionDenied (denied by policy or person, or expired) or ApprovalTimeout (no
 * decision within `timeout`; ServerUnavailable when the server could not be reached until
 * then) without running `fn`; a TypeError when the arguments are not plain JSON (nothing
 * is submitted then).
 */
export function govern<A extends unknown[], R>(fn: (...args: A) => R, options: GovernOptions<A> = {}): Governed<A, R> {
  const { signal, toParams, fromParams, tool, ...gateOptions } = options;
  const gate = new Gate({ ...gateOptions, tool: tool ?? fn.name });
  const label = gate.label;

  const paramsOf =
    toParams ??
    ((...args: A): JsonObject => {
      if (args.length === 0) return {};
      if (args.length === 1 && isPlainObject(args[0])) return args[0];
      throw new TypeError(
        `${label}: a governed function takes one plain object of named arguments (its params); ` +
          "for other signatures pass toParams (and fromParams)",
      );
    });

  function argsFor(decided: JsonObject, args: A): A {
    if (fromParams) return fromParams(decided, args);
    if (toParams) {
      // Fail closed: the approved params cannot be mapped back onto these arguments.
      throw new TypeError(`${label}: an approver changed the params, and there is no fromParams to apply them; not running`);
    }
    return [decided] as unknown as A;
  }

  const governed = async function (this: unknown, ...args: A): Promise<Awaited<R>> {
    const params = paramsOf(...args);
    return gate.run<Awaited<R>>(
      params,
      (decided, { edited }) =>
        fn.apply(this, edited ? argsFor(decided, args) : args) as unknown as Awaited<R> | PromiseLike<Awaited<R>>,
      { signal },
    );
  };
  Object.defineProperty(governed, "name", { value: fn.name || label });
  Object.defineProperty(governed, "gate", { value: gate, enumerable: true });
  return governed as Governed<A, R>;
}
