# Template "python": runs app.py, with the packages of requirements.txt if present.
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN if [ -f requirements.txt ]; then pip install --no-cache-dir -r requirements.txt; fi
USER 65534:65534
ENV PYTHONUNBUFFERED=1
CMD ["python", "app.py"]
