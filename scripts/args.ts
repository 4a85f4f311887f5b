/** Command-line options of the scripts in this folder: `--name value` pairs read from process.argv. */

/** The value after `--name`, or `dflt` when the option is absent. */
export function sarg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
}

/** `sarg` read as a number (NaN when the value is not one). */
export function narg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
}
