/**
 * The layers x KV-heads view: one cell per (layer, KV head), colour = live entries / tokens
 * seen (1 = the whole conversation is kept), hover shows the counts. A layer that reads
 * another layer's cache (layer sharing) is drawn hatched with a link to its source. Under a
 * head-role policy (PruLong / DuoAttention) each cell is marked G (global head: keeps
 * everything) or S (streaming head: sinks + recent window).
 */
import type { CacheSnapshot } from '../kv/types';

const CELL_MIN = 14;

/** White (nothing kept) to deep blue (everything kept). */
export function occupancyColour(fraction: number): string {
  const f = Math.max(0, Math.min(1, fraction));
  const r = Math.round(245 - f * (245 - 20));
  const g = Math.round(247 - f * (247 - 70));
  const b = Math.round(250 - f * (250 - 160));
  return `rgb(${r},${g},${b})`;
}

export interface HeatmapLayout {
  left: number;
  top: number;
  cellW: number;
  cellH: number;
}

export function layoutFor(canvas: HTMLCanvasElement, s: Pick<CacheSnapshot, 'numLayers' | 'numKvHeads'>): HeatmapLayout {
  const left = 56;
  const top = 22;
  const cellW = Math.max(CELL_MIN, Math.floor((canvas.width - left - 8) / s.numKvHeads));
  const cellH = Math.max(CELL_MIN, Math.floor((canvas.height - top - 8) / s.numLayers));
  return { left, top, cellW, cellH };
}

export function drawHeatmap(canvas: HTMLCanvasElement, s: CacheSnapshot): void {
  const { left, top, cellW, cellH } = layoutFor(canvas, s);
  const needH = top + cellH * s.numLayers + 8;
  if (canvas.height < needH) canvas.height = needH;
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#5b6572';
  ctx.textBaseline = 'middle';
  for (let h = 0; h < s.numKvHeads; h++) ctx.fillText(`h${h}`, left + h * cellW + 2, top - 10);
  const tokens = Math.max(1, s.tokens);
  for (let l = 0; l < s.numLayers; l++) {
    const y = top + l * cellH;
    ctx.fillStyle = '#5b6572';
    ctx.fillText(`L${l}`, 4, y + cellH / 2);
    const src = s.cacheSource[l] ?? l;
    for (let h = 0; h < s.numKvHeads; h++) {
      const i = l * s.numKvHeads + h;
      const x = left + h * cellW;
      ctx.fillStyle = occupancyColour((s.live[i] ?? 0) / tokens);
      ctx.fillRect(x, y, cellW - 1, cellH - 1);
      const role = s.policy.roles?.[l]?.[h];
      if (role !== undefined) {
        ctx.fillStyle = (s.live[i] ?? 0) / tokens > 0.5 ? '#ffffff' : '#1d2530';
        ctx.fillText(role === 1 ? 'G' : 'S', x + 3, y + Math.min(cellH / 2, 9));
      }
      if (src !== l) {
        ctx.strokeStyle = 'rgba(200,80,0,0.8)';
        ctx.beginPath();
        ctx.moveTo(x, y + cellH - 1);
        ctx.lineTo(x + cellW - 1, y);
        ctx.stroke();
      }
    }
    if (src !== l) {
      // A link from the shared layer to the layer whose cache it reads.
      const ys = top + src * cellH + cellH / 2;
      ctx.strokeStyle = 'rgba(200,80,0,0.8)';
      ctx.beginPath();
      ctx.moveTo(left - 6, y + cellH / 2);
      ctx.bezierCurveTo(left - 30, y + cellH / 2, left - 30, ys, left - 6, ys);
      ctx.stroke();
    }
  }
}

/** The (layer, head) under a point of the canvas, or null. */
export function cellAt(canvas: HTMLCanvasElement, s: CacheSnapshot, x: number, y: number): { layer: number; head: number } | null {
  const { left, top, cellW, cellH } = layoutFor(canvas, s);
  const head = Math.floor((x - left) / cellW);
  const layer = Math.floor((y - top) / cellH);
  if (head < 0 || layer < 0 || head >= s.numKvHeads || layer >= s.numLayers) return null;
  return { layer, head };
}
