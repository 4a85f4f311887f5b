/**
 * Stop-string handling for streamed text: text is released only when it can no longer be
 * the beginning of a stop string, so a caller never sees part of a stop sequence.
 */
export class StopMatcher {
  private pending = '';
  constructor(private stops: readonly string[]) {}

  /** Adds text; returns what may be emitted now and whether a stop string was hit. */
  push(text: string): { emit: string; stopped: boolean } {
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      if (!s) continue;
      const i = this.pending.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      const emit = this.pending.slice(0, cut);
      this.pending = '';
      return { emit, stopped: true };
    }
    // Hold back the longest suffix that is a proper prefix of some stop string.
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.pending.length); k > hold; k--) {
        if (this.pending.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    const emit = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { emit, stopped: false };
  }

  /** Releases held-back text at the end of generation. */
  flush(): string {
    const t = this.pending;
    this.pending = '';
    return t;
  }
}
