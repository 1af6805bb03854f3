/**
 * Everything this project borrows from prom-client beyond its typed API, in one
 * place; test/server/prom-internals.test.ts fails when a prom-client release
 * changes any of it.
 *
 * prom-client's registry (`metrics()`) and a histogram's `get()` (behind
 * `getMetricsAsJSON()`) both read a histogram through its undocumented,
 * untyped `getForPromString()`, which returns one value per exported line. A
 * subclass that overrides it changes what every reader sees.
 */
import client from "prom-client";

/** One exported line of a histogram, as getForPromString() returns it. */
export interface ExportedValue {
  /** `le` on bucket lines (a number, or "+Inf"); nothing on the _sum and _count lines. */
  labels: Record<string, string | number>;
  /** The metric's own labels (route, ...), kept apart from `le`. */
  sharedLabels?: Record<string, string | number>;
  value: number;
  /** `<name>_bucket`, `<name>_sum` or `<name>_count`. */
  metricName: string;
}

export interface HistogramExport {
  values: ExportedValue[];
}

type GetForPromString = (this: client.Histogram<string>) => Promise<HistogramExport>;

/** prom-client's own getForPromString(), which the subclass below calls before amending its result. */
export const histogramGetForPromString = (client.Histogram.prototype as unknown as { getForPromString: GetForPromString }).getForPromString;

/**
 * A prom-client histogram whose exported lines `amend` may change (add to a
 * value, add a line) each time the histogram is read, before any reader sees them.
 */
export class AmendedHistogram<T extends string> extends client.Histogram<T> {
  constructor(
    config: client.HistogramConfiguration<T>,
    private readonly amend: (values: ExportedValue[]) => void,
  ) {
    super(config);
  }

  async getForPromString(): Promise<HistogramExport> {
    const data = await histogramGetForPromString.call(this);
    this.amend(data.values);
    return data;
  }
}
