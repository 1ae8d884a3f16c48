// Uploads one file with tus-js-client, for tests/test_tus_clients.py and docs/resumable.md.
// node upload.mjs <endpoint> <file> <chunkSize> <metadata JSON> [delayMs] [apiKey]
// Prints "url <upload URL>" once created, "offset <n>" after each chunk, "done" at the end;
// exits 1 with the error on failure. Retries (and so resumes) through cut connections and
// restarts of the server.
import { readFileSync } from "node:fs";
import * as tus from "tus-js-client";

const [endpoint, file, chunkSize, metadata, delayMs = "0", apiKey = ""] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let announced = false;

const upload = new tus.Upload(readFileSync(file), {
  endpoint,
  chunkSize: Number(chunkSize),
  metadata: JSON.parse(metadata),
  headers: apiKey ? { "X-API-Key": apiKey } : {},
  retryDelays: [100, 250, 500, 1000, 1000, 2000, 2000, 2000, 3000, 3000, 3000, 3000, 3000, 3000, 3000],
  storeFingerprintForResuming: false,
  onBeforeRequest: async (req) => {
    if (req.getMethod() === "PATCH" && Number(delayMs) > 0) await sleep(Number(delayMs));
  },
  onChunkComplete: (_size, accepted) => {
    if (!announced) {
      console.log(`url ${upload.url}`);
      announced = true;
    }
    console.log(`offset ${accepted}`);
  },
  onSuccess: () => {
    console.log("done");
  },
  onError: (error) => {
    console.error(`failed: ${error}`);
    process.exit(1);
  },
});
upload.start();
