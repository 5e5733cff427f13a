// The words that name the trained tiny checkpoint, from the summary train/train.ts writes beside it
// (data/tiny-alice.json): shared by the command line (src/step/load.ts) and the browser (web/platform/model.ts).

/** "trained on …, N steps, M tokens; eval loss X nats/byte on the held-out 10 %, uniform Y". Throws on a summary without those fields. */
export function trainingLabel(t: { text: string; steps: number; tokensSeen: number; evalLoss: number; uniformLoss: number }): string {
  return `trained on ${t.text}, ${t.steps} steps, ${t.tokensSeen.toLocaleString("en")} tokens; eval loss ${t.evalLoss.toFixed(2)} nats/byte on the held-out 10 %, uniform ${t.uniformLoss.toFixed(2)}`;
}
