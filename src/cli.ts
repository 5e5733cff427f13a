// The command line's entry point (bin/tinyseek.js, `npm start`); the commands live in src/cli/.
import { main } from "./cli/main.ts";

process.exitCode = await main(process.argv.slice(2));
