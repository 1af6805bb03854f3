/**
 * The type of a loaded configuration, derived from the settings table: a
 * setting's dotted path is its place in the nested object, its `type` (and an
 * enum's `values`) its value type, and a default, `required` or `derivedFrom`
 * make it always present; anything else is optional. A setting therefore exists
 * in both the table and the type, or in neither.
 */
import type { SETTING_TABLE, Setting } from "./settings.js";

/** The value type of a setting, from its `type` (and its `values` for an enum). */
type ValueOf<S> = S extends { type: "json" }
  ? unknown
  : S extends { type: "int" }
    ? number
    : S extends { type: "bool" }
      ? boolean
      : S extends { type: "list" }
        ? string[]
        : S extends { type: "enum"; values: readonly (infer V)[] }
          ? V
          : string;
/** A loaded configuration always has the settings with a default, the required ones and the derived ones. */
type AlwaysSet<S> = S extends { default: unknown } | { required: object } | { derivedFrom: string } ? true : false;
type Leaf<S> = S extends { path: `${string}.${string}` } ? never : S;
type Head<S> = S extends { path: `${infer H}.${string}` } ? H : never;
type Under<S, H extends string> = S extends { path: `${H}.${infer T}` } ? Omit<S, "path"> & { path: T } : never;
/** The settings as nested objects: "a.b.c" is `a: { b: { c } }`. */
type Tree<S extends { path: string }> = {
  -readonly [L in Leaf<S> as AlwaysSet<L> extends true ? L["path"] : never]: ValueOf<L>;
} & {
  -readonly [L in Leaf<S> as AlwaysSet<L> extends true ? never : L["path"]]?: ValueOf<L>;
} & { -readonly [H in Head<S>]: Tree<Under<S, H>> };
/** One object type per level instead of an intersection of three (what editors and errors show). */
type Flat<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]: Flat<T[K]> } : T;

/** A loaded configuration: one property per setting of SETTING_TABLE, at its path. */
export type Config = Flat<Tree<(typeof SETTING_TABLE)[number]>>;

/** Whether Config types the setting as always present (AlwaysSet, at run time). */
export function alwaysSet(s: Setting): boolean {
  return s.default !== undefined || s.required !== undefined || s.derivedFrom !== undefined;
}
