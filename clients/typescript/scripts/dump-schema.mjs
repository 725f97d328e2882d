// Refreshes schema/openapi.json and schema/contract.json from the Python app (then run
// generate-types.mjs, as `npm run schema` does).
import { writeFileSync } from "node:fs";
import { serverContract, stable } from "./contract.mjs";
import { CONTRACT, OPENAPI } from "./generate-types.mjs";

const { openapi, contract } = await serverContract();
writeFileSync(OPENAPI, stable(openapi));
writeFileSync(CONTRACT, stable(contract));
console.log(`wrote ${OPENAPI} and ${CONTRACT}`);
