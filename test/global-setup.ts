// Placeholder until the embedded Temporal server lands; replaced in the next commits.
export default async function setup(): Promise<void> {}
