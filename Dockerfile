# Hugging Face Spaces (Docker SDK) or any container host: serves on $PORT (7860).
FROM python:3.11-slim

# cairo renders the SVG logos; libGL and GLib are what OpenCV (under the logo reader, rapidocr) loads
RUN apt-get update && apt-get install -y --no-install-recommends libcairo2 libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd -m -u 1000 user
WORKDIR /home/user/app

COPY requirements.txt .
# CPU builds of torch (the default PyPI wheels carry CUDA, several GB)
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir -r requirements.txt

COPY --chown=user . .
USER user
# The store goes to /data/logos when /data (a Space's persistent storage) is mounted, else to ./data.
ENV HOST=0.0.0.0 PORT=7860 PYTHONUNBUFFERED=1
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=4)"
# Serves Gradio, Dash and the API within seconds; on first start it builds the demo store in the background
# (about a minute; progress in /health and on the pages).
CMD ["python", "app.py"]
