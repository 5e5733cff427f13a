// The command line's entry point (bin/tinyseek.js, `npm start`); the commands live in src/cli/.
import { main } from "./cli/main.ts";

// `tinyseek golden list | head`: the reader went away, which is not an error of ours.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
    process.exit(process.exitCode ?? 0);
  });
}

process.exitCode = await main(process.argv.slice(2));
