"""Amazon SageMaker backends (sagemaker-pyspark, boto3)."""
