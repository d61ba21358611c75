# Template "python": runs app.py, with the packages of requirements.txt if present
# (pip fetches them from the network: needs SSHPANEL_BUILD_NETWORK=bridge).
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN chmod -R a+rX /app && if [ -f requirements.txt ]; then pip install --no-cache-dir -r requirements.txt; fi
USER 65534:65534
ENV PYTHONUNBUFFERED=1
CMD ["python", "app.py"]
