# Template "static": serves the folder's files with busybox httpd on port 8080.
FROM busybox:latest
COPY . /www
RUN chmod -R a+rX /www
USER 65534:65534
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
