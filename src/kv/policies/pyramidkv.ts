import type { CachePolicy, ParamValues, PolicyContext } from '../policy';
import { snapkv } from './snapkv';

/**
 * PyramidKV (Cai et al., 2406.02069): SnapKV scoring with budgets that decrease linearly with
 * depth. Layer budgets run from 2B - Bmin (first layer) to Bmin (last), Bmin = max(window + 1,
 * round(B / beta)), so their mean is the budget B.
 */
function layerBudget(budget: number, layer: number, p: ParamValues, ctx: PolicyContext): number {
  const bMin = Math.max(p.window! + 1, Math.round(budget / p.beta!));
  const bMax = 2 * budget - bMin;
  if (ctx.numLayers === 1 || bMax <= bMin) return budget;
  return Math.round(bMax - (layer * (bMax - bMin)) / (ctx.numLayers - 1));
}

export const pyramidkv: CachePolicy = {
  ...snapkv,
  name: 'pyramidkv',
  description: 'PyramidKV: SnapKV scoring with budgets decreasing linearly with layer depth (mean = budget).',
  params: [...snapkv.params, { name: 'beta', type: 'float', min: 1, max: 100, default: 20, description: 'Ratio of the mean budget to the last layer\u2019s budget.' }],
  layerBudget,
};
