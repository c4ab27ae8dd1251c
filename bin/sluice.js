#!/usr/bin/env node
// Runs the TypeScript sources directly: Node >= 22.18 strips types natively (see docs/adr/0001).
import '../cli/main.ts';
