// What the pages' forms and actions share: a failed call shown next to the inputs it concerns
// (keyboard taken to the first), a button's call whose failure is shown, and a list read whole
// over the server's pages.
import { useState } from "preact/hooks";
import { assignViolations, type Problem, problemOf, type Violation } from "./logic/errors";

/**
 * A form's failed call: the server's (or the page's own) field violations on the inputs that
 * edit them (`fields`: input name → field paths), the rest in `other`. `show` also takes the
 * keyboard to the first input in trouble, found by id `${idPrefix}${name}`.
 */
export function useFormProblems<K extends string>(fields: Record<K, readonly string[]>, idPrefix: string) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [byInput, setByInput] = useState<Partial<Record<K, string[]>>>({});
  const [other, setOther] = useState<Violation[]>([]);
  const show = (p: Problem) => {
    const a = assignViolations(p.violations, fields);
    setProblem(p);
    setByInput(a.byInput as Partial<Record<K, string[]>>);
    setOther(a.other);
    const first = (Object.keys(fields) as K[]).find((k) => a.byInput[k]);
    if (first) requestAnimationFrame(() => document.getElementById(`${idPrefix}${first}`)?.focus());
  };
  const clear = () => {
    setProblem(null);
    setByInput({});
    setOther([]);
  };
  return { problem, byInput, other, show, clear };
}

/** Runs calls for buttons: the last failure is `problem`; `after` runs after each call. */
export function useAction(after?: () => void) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const act = async (call: () => Promise<unknown>) => {
    setProblem(null);
    try {
      await call();
    } catch (err) {
      setProblem(problemOf(err));
    }
    after?.();
  };
  return { problem, setProblem, act };
}

/** Reads every page of a list: `page(token)` answers a page's items and the next page's token. */
export async function listAll<T>(page: (token: string) => Promise<{ items: T[]; next: string }>): Promise<T[]> {
  const all: T[] = [];
  let token = "";
  do {
    const r = await page(token);
    all.push(...r.items);
    token = r.next;
  } while (token);
  return all;
}
