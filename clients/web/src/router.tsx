// A small history router: the gateway answers every extension-less path with index.html, so
// the app's own paths survive a reload and can be shared.
import type { ComponentChildren, JSX } from "preact";
import { useEffect, useState } from "preact/hooks";

export { match } from "./logic/paths";

const listeners = new Set<() => void>();

/** Goes to `to` (a path), adding a history entry unless `replace`. */
export function navigate(to: string, replace = false): void {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  listeners.forEach((l) => l());
}

addEventListener("popstate", () => listeners.forEach((l) => l()));

/** Returns the current path, re-rendering when it changes. */
export function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const l = () => setPath(location.pathname);
    listeners.add(l);
    l();
    return () => void listeners.delete(l);
  }, []);
  return path;
}

/** A link that changes the route without reloading the page. */
export function Link(props: { href: string; children: ComponentChildren } & JSX.HTMLAttributes<HTMLAnchorElement>) {
  const { href, children, ...rest } = props;
  return (
    <a
      {...rest}
      href={href}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(href);
      }}
    >
      {children}
    </a>
  );
}
