// A gradient checked along one direction: the directional derivative of a float32 model's loss by
// central differences against the gradient the backward accumulated (read before the probes run).
import type { DiffusionLM } from 'diffpo';

/** fd: (loss(θ + h d) - loss(θ - h d)) / 2h over what model.parameters() holds, d fixed; analytic: <gradient, d>. */
export async function directionalDerivative(model: DiffusionLM, loss: () => Promise<number>, h = 2e-3): Promise<{ fd: number; analytic: number }> {
  const params = [...model.parameters().values()];
  const grads = [...model.gradients().values()].map((g) => g.slice());
  const dir = params.map((p) => p.map((_, i) => Math.cos(i * 1.7 + p.length)));
  const at = async (t: number) => {
    params.forEach((p, k) => p.forEach((v, i) => (p[i] = v + t * dir[k]![i]!)));
    const l = await loss();
    params.forEach((p, k) => p.forEach((v, i) => (p[i] = v - t * dir[k]![i]!)));
    return l;
  };
  const fd = ((await at(h)) - (await at(-h))) / (2 * h);
  const analytic = grads.reduce((a, g, k) => a + g.reduce((s, v, i) => s + v * dir[k]![i]!, 0), 0);
  return { fd, analytic };
}
