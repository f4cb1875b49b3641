# The MyIM server on a distroless base: a static myimd (and myimctl), no
# shell, no libc, running as an unprivileged user.
#
#   docker build -t myim .
#   docker run --rm -p 5222:5222 -p 5223:5223 -p 5280:5280 -v myim:/var/lib/myim myim
#
# scripts/test.sh builds the same binaries with scripts/build-static.sh and
# runs them from an empty directory with an empty environment.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG MYIM_VERSION
RUN MYIM_VERSION="${MYIM_VERSION}" ./scripts/build-static.sh /out && mkdir -p /data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/myimd /out/myimctl /usr/local/bin/
# The data directory belongs to the nonroot user (65532).
COPY --from=build --chown=65532:65532 /data /var/lib/myim
USER nonroot
WORKDIR /var/lib/myim
VOLUME /var/lib/myim
# client, login, public HTTP, admin (listen on all interfaces only inside
# a private network), center links, cluster joins
EXPOSE 5222 5223 5280 5281 5269 5270
ENV MYIM_DATA_DIR=/var/lib/myim
ENTRYPOINT ["/usr/local/bin/myimd"]
