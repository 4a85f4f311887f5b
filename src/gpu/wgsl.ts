/**
 * A tiny WGSL preprocessor so one file can hold a kernel family's variants
 * (f32 / packed f16 / packed bf16 weights, with or without bias, ...).
 *
 *   #if NAME        #elif NAME       #else       #endif      (NAME true when defined and not false/0)
 *   ${NAME}         replaced by the define's value
 */
export type Defines = Record<string, string | number | boolean | undefined>;

export function preprocessWgsl(source: string, defines: Defines = {}): string {
  const truthy = (name: string): boolean => {
    const neg = name.startsWith('!');
    const key = neg ? name.slice(1) : name;
    const v = defines[key];
    const on = v !== undefined && v !== false && v !== 0 && v !== '0';
    return neg ? !on : on;
  };
  const out: string[] = [];
  // Each frame: is this branch emitting, has any branch of this #if been taken, was the parent emitting.
  const stack: { emit: boolean; taken: boolean; parent: boolean }[] = [];
  let emitting = true;
  const lines = source.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const m = /^\s*#(if|elif|else|endif)\b\s*(\S*)/.exec(line);
    if (!m) {
      if (emitting) out.push(line);
      continue;
    }
    const [, dir, arg] = m;
    if (dir === 'if') {
      const on: boolean = emitting && truthy(arg!);
      stack.push({ emit: on, taken: on, parent: emitting });
      emitting = on;
    } else {
      const top = stack[stack.length - 1];
      if (!top) throw new Error(`WGSL preprocessor: #${dir} without #if at line ${i + 1}`);
      if (dir === 'elif') {
        const on: boolean = top.parent && !top.taken && truthy(arg!);
        top.emit = on;
        top.taken ||= on;
        emitting = on;
      } else if (dir === 'else') {
        const on: boolean = top.parent && !top.taken;
        top.emit = on;
        top.taken = true;
        emitting = on;
      } else {
        stack.pop();
        emitting = top.parent;
      }
    }
  }
  if (stack.length) throw new Error('WGSL preprocessor: unterminated #if');
  return out.join('\n').replace(/\$\{(\w+)\}/g, (_, k: string) => {
    const v = defines[k];
    if (v === undefined) throw new Error(`WGSL preprocessor: \${${k}} is not defined`);
    return String(v);
  });
}
