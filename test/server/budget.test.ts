/**
 * The upstream budget: per client and minute, on its own clock; a refusal is a
 * BudgetExceededError naming the hop whose cache asked.
 */
import t from "tap";
import { BudgetExceededError, UpstreamBudget } from "../../src/server/budget.js";

function manualClock(start: number): { at: number; now(): number } {
  return {
    at: start,
    now() {
      return this.at;
    },
  };
}

t.test("admits perMinute calls of a client in a minute, then refuses naming the hop", async (t) => {
  const clock = manualClock(1_000_000);
  const budget = new UpstreamBudget(2, { clock });
  t.equal(budget.admitter("a")("STS"), undefined);
  t.equal(budget.admitter("a")("STS"), undefined);
  const refused = budget.admitter("a")("impersonation");
  t.type(refused, BudgetExceededError);
  t.equal(refused?.hop, "impersonation");
  t.equal(budget.admitter("b")("STS"), undefined, "another client has its own budget");
  clock.at += 59_999;
  t.type(budget.admitter("a")("STS"), BudgetExceededError, "still the same minute");
  clock.at += 1;
  t.equal(budget.admitter("a")("STS"), undefined, "a new minute on the budget's clock");
});

t.test("0 per minute: no budget", async (t) => {
  const budget = new UpstreamBudget(0);
  for (let i = 0; i < 100; i++) t.equal(budget.admitter("a")("STS"), undefined);
});
