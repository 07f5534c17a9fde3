import { expect } from 'vitest';

/** Runs `call`, which must throw an instance of `type`; the error it threw. */
export function thrownBy<E extends Error>(type: abstract new (...args: never[]) => E, call: () => unknown): E {
  try {
    call();
  } catch (error) {
    expect(error).toBeInstanceOf(type);
    return error as E;
  }
  throw new Error(`expected a ${type.name}`);
}
