/** A small typed event emitter (browsers and Node alike). */
export class Emitter<E> {
  private handlers = new Map<keyof E, Set<(v: never) => void>>();

  /** Adds a handler and returns a function that removes it. */
  on<K extends keyof E>(ev: K, fn: (v: E[K]) => void): () => void {
    let s = this.handlers.get(ev);
    if (!s) this.handlers.set(ev, (s = new Set()));
    s.add(fn as (v: never) => void);
    return () => s!.delete(fn as (v: never) => void);
  }

  protected emit<K extends keyof E>(ev: K, v: E[K]): void {
    const s = this.handlers.get(ev);
    if (!s) return;
    for (const fn of [...s]) {
      try {
        (fn as (v: E[K]) => void)(v);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}
