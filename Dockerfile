# Guildgate relay image (the Discord bot will run from the same image).
#   docker build -t guildgate .
#   docker run -p 8080:8080 -e OPENAI_API_KEY=... -v guildgate-data:/app/data guildgate
# Config: /app/guildgate.yaml, a copy of guildgate.example.yaml; mount your own over it. The image
# always listens on 0.0.0.0:8080 (GUILDGATE_HOST/GUILDGATE_PORT override the config file), because
# loopback is unreachable from outside the container and the health check probes 8080.

# --- build: compile TypeScript, then drop dev dependencies -------------------------------------
FROM node:20-bookworm-slim AS build
# better-sqlite3 compiles from source when no prebuilt binary matches.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Dependencies first, so source edits do not reinstall them.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# --- runtime -----------------------------------------------------------------------------------
FROM node:20-bookworm-slim
ENV NODE_ENV=production GUILDGATE_HOST=0.0.0.0 GUILDGATE_PORT=8080
WORKDIR /app
# Owned by root and read-only for the `node` user that runs the relay.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/guildgate.example.yaml ./
# data/ is where the embedded SQLite store lives when no MONGODB_URI is set.
RUN cp guildgate.example.yaml guildgate.yaml && mkdir data && chown node:node data
USER node
EXPOSE 8080
# Probes the container's own address, the one a load balancer uses, rather than loopback.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://' + require('node:os').hostname() + ':8080/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/src/main.js"]
