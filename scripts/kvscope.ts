// Entry for running the CLI from source (bin/kvscope.mjs and `npm run generate` use it).
import { main } from '../src/cli';

const code = await main(process.argv.slice(2).filter((a) => a !== '--'));
// Let Dawn finish shutting down before exiting.
setTimeout(() => process.exit(code), 20);
